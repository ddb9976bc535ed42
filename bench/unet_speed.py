"""Training speed and peak memory: the Efficient U-Net against the standard U-Net layout at equal parameter count.

The paper (Saharia et al. 2022, App. B.1) reports that the Efficient U-Net trains at 2–3× the steps/s of the
Improved-DDPM/Palette U-Net with less memory. This benchmark measures that on the 64→256 task: x_t at 256×256, the
64×64 low-res image upsampled and concatenated, a noise-conditioning level, and a text sequence.

- efficient: PAPER_SR_256's layout (128/256/512/1024 channels scaled by --dim/128, 2/4/8/8 residual blocks,
  attention only at the lowest level).
- standard: the Improved-DDPM/ADM 256×256 layout (channel multipliers 1,1,2,2,4,4, 2 residual blocks per level,
  attention at 16 and 8, full-resolution convolutions first), its width chosen so that the parameter count is within
  ±5% of the efficient network's. Both get the same conditioning (time, pooled text, noise level, text in attention).

Each model is timed in its own subprocess (so ru_maxrss is that model's peak); one training step is forward, MSE
loss, backward, and an AdamW update; steps/s is from the median step time, and the FLOPs of a step (counted by
torch.utils.flop_counter) give a figure that other processes on a shared machine cannot disturb. On CUDA it also
runs bf16 autocast and torch.compile, and reports torch.cuda.max_memory_allocated. Nothing here asserts on time;
the last line is the headline ratio (efficient steps/s ÷ standard steps/s).

    python bench/unet_speed.py                 # CPU, a couple of minutes
    python bench/unet_speed.py --dim 64 --batch 8 --steps 20   # a GPU

``--against imagen-pytorch`` instead times imagen_core's Efficient U-Net against lucidrains/imagen-pytorch's
``SRUnet256`` (its dim --ip-dim, default 32) at equal parameters (imagen_core's width chosen to match within a few
percent), with Adam, in alternating subprocesses (ours, theirs, ours, theirs, ...; the best median of each). The
package is never installed here: install it with ``pip install --no-deps --target DIR imagen-pytorch==2.1.0
einops beartype`` in a scratch folder outside this repository and pass ``--imagen-pytorch-path DIR``. Its
module-level ``torchvision.transforms`` and ``kornia.augmentation`` imports and its hub T5 config lookup are stood in
for (a U-Net forward uses none of them); its package ``__init__`` (trainer, datasets) is not run. imagen_core runs
with the options a CPU trainer would pick: channels-last, pixel-shuffle upsampling, and Winograd F(2×2, 3×3) for the
wide 3×3 convolutions (``--no-cpu-winograd`` for oneDNN's direct convolutions instead).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from imagen_core.config import PAPER_SR_256, UNetConfig  # noqa: E402

STANDARD_MULTS = (1, 1, 2, 2, 4, 4)


def efficient_config(args: argparse.Namespace) -> UNetConfig:
    return dataclasses.replace(
        PAPER_SR_256,
        dim=args.dim,
        num_heads=args.heads,
        text_embed_dim=args.text_dim,
        cond_dim=4 * args.dim,
    )


def standard_config(args: argparse.Namespace, width: int) -> UNetConfig:
    return UNetConfig(
        kind="standard",
        image_size=256,
        dim=width,
        channel_mults=STANDARD_MULTS,
        num_res_blocks=2,
        attn_resolutions=(16, 8),
        num_heads=args.heads,
        text_embed_dim=args.text_dim,
        cond_dim=4 * args.dim,
        lowres_cond=True,
    )


def count(config: UNetConfig) -> int:
    import torch

    from imagen_core.unet import build_unet, count_parameters

    with torch.device("meta"):
        return count_parameters(build_unet(config))


def matched_standard(args: argparse.Namespace, target: int) -> tuple[UNetConfig, int]:
    """The standard layout whose parameter count is closest to target, over widths divisible by the head count."""
    best: tuple[float, UNetConfig, int] | None = None
    for width in range(args.heads, 64 * args.dim, args.heads):
        config = standard_config(args, width)
        n = count(config)
        gap = abs(n - target) / target
        if best is None or gap < best[0]:
            best = (gap, config, n)
        if n > target:
            break
    assert best is not None
    return best[1], best[2]


def worker(args: argparse.Namespace) -> None:
    """Time one model in this process and print one JSON line."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from imagen_core.unet import build_unet, count_parameters, upsample_lowres

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.impl == "imagen-pytorch":
        srunet256 = import_imagen_pytorch(args.imagen_pytorch_path)
        unet = srunet256(dim=args.ip_dim, text_embed_dim=args.text_dim, lowres_cond=True).to(device).train()
        config = None
    else:
        config = UNetConfig.from_dict(json.loads(args.config))
        unet = build_unet(config).to(device).train()
    params = count_parameters(unet)
    optimizer = (
        torch.optim.Adam(unet.parameters(), lr=1e-4)
        if args.optimizer == "adam"
        else torch.optim.AdamW(unet.parameters(), lr=1e-4)
    )

    b = args.batch
    x_t = torch.randn(b, 3, 256, 256, device=device)
    lowres = upsample_lowres(torch.randn(b, 3, 64, 64, device=device), 256)
    noise_level = torch.rand(b, device=device)
    time_ = torch.rand(b, device=device)
    text_embeds = torch.randn(b, args.text_len, args.text_dim, device=device)
    text_mask = torch.ones(b, args.text_len, dtype=torch.bool, device=device)
    target = torch.randn_like(x_t)

    model = torch.compile(unet) if args.variant == "compile" else unet
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.variant in ("bf16", "compile"))

    def forward():
        if config is None:
            return model(
                x_t,
                time_,
                text_embeds=text_embeds,
                text_mask=text_mask,
                lowres_cond_img=lowres,
                lowres_noise_times=noise_level,
            )
        return model(
            x_t,
            time_,
            text_embeds=text_embeds,
            text_mask=text_mask,
            lowres_cond_img=lowres,
            lowres_noise_level=noise_level,
        )

    def step() -> None:
        with autocast:
            loss = (forward().float() - target).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    rss_before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step_times = []
    cpu_times = []
    for _ in range(args.steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        sync()
        step_times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    # The median step is robust to other processes on a shared machine; FLOPs are not affected by them at all.
    median = statistics.median(step_times)
    with FlopCounterMode(display=False) as flops:
        step()
    result = {
        "params": params,
        "steps_per_s": 1.0 / median,
        "s_per_step": median,
        "s_per_step_min": min(step_times),
        # CPU seconds of this process per step: what a shared machine's other load disturbs least.
        "cpu_s_per_step": statistics.median(cpu_times),
        "tflop_per_step": flops.get_total_flops() / 1e12,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_steps_mb": rss_before_kb / 1024,
    }
    if device.type == "cuda":
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def paired_worker(args: argparse.Namespace) -> None:
    """Both models in one process, training steps interleaved (ours, theirs, theirs, ours, ...): whatever load a shared
    machine carries falls on adjacent steps of both alike. Prints one JSON line with each pair's time ratio."""
    import torch

    from imagen_core.unet import build_unet, upsample_lowres

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours = build_unet(UNetConfig.from_dict(json.loads(args.config))).train()
    theirs = import_imagen_pytorch(args.imagen_pytorch_path)(
        dim=args.ip_dim, text_embed_dim=args.text_dim, lowres_cond=True
    ).train()
    b = args.batch
    x_t = torch.randn(b, 3, 256, 256)
    lowres = upsample_lowres(torch.randn(b, 3, 64, 64), 256)
    level, time_ = torch.rand(b), torch.rand(b)
    text_embeds = torch.randn(b, args.text_len, args.text_dim)
    text_mask = torch.ones(b, args.text_len, dtype=torch.bool)
    target = torch.randn_like(x_t)
    conditioning = dict(text_embeds=text_embeds, text_mask=text_mask, lowres_cond_img=lowres)

    def stepper(model, level_name: str):
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

        def step() -> tuple[float, float]:
            start, cpu_start = time.perf_counter(), time.process_time()
            loss = (model(x_t, time_, **conditioning, **{level_name: level}) - target).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return time.perf_counter() - start, time.process_time() - cpu_start

        return step

    steps = {
        "imagen_core": stepper(ours, "lowres_noise_level"),
        "imagen-pytorch": stepper(theirs, "lowres_noise_times"),
    }
    for step in steps.values():
        step()
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for i in range(args.steps):
        order = list(steps) if i % 2 == 0 else list(reversed(steps))
        for name in order:
            w, c = steps[name]()
            wall[name].append(w)
            cpu[name].append(c)
    pairs_wall = [t / o for o, t in zip(wall["imagen_core"], wall["imagen-pytorch"], strict=True)]
    pairs_cpu = [t / o for o, t in zip(cpu["imagen_core"], cpu["imagen-pytorch"], strict=True)]
    print(
        json.dumps(
            {
                "wall_s": {k: statistics.median(v) for k, v in wall.items()},
                "cpu_s": {k: statistics.median(v) for k, v in cpu.items()},
                "pair_ratios_wall": pairs_wall,
                "pair_ratios_cpu": pairs_cpu,
            }
        )
    )


def import_imagen_pytorch(path: str | None):
    """lucidrains/imagen-pytorch's SRUnet256 from a scratch install at ``path``, with its import-time extras stood in
    for: torchvision.transforms and kornia.augmentation (image augmentation, unused by a U-Net forward) and the hub
    T5 config it reads for a default argument (we always pass text_embed_dim)."""
    import importlib
    import importlib.util
    import types

    if path:
        sys.path.insert(0, path)
    spec = importlib.util.find_spec("imagen_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("imagen_pytorch is not importable: pass --imagen-pytorch-path DIR (see the docstring)")
    package = types.ModuleType("imagen_pytorch")
    package.__path__ = list(spec.submodule_search_locations)  # the package without its __init__ (trainer, data)
    t5 = types.ModuleType("imagen_pytorch.t5")
    t5.DEFAULT_T5_NAME = "stand-in"
    t5.get_encoded_dim = lambda name: 768
    t5.t5_encode_text = None
    stubs = {"imagen_pytorch": package, "imagen_pytorch.t5": t5}
    for name in ("torchvision", "torchvision.transforms", "kornia", "kornia.augmentation"):
        if importlib.util.find_spec(name.split(".")[0]) is None:
            stubs[name] = types.ModuleType(name)
    sys.modules.update(stubs)
    module = importlib.import_module("imagen_pytorch.imagen_pytorch")
    return module.SRUnet256


def count_imagen_pytorch(args: argparse.Namespace) -> int:
    import torch

    srunet256 = import_imagen_pytorch(args.imagen_pytorch_path)
    with torch.device("meta"):
        return sum(
            p.numel() for p in srunet256(dim=args.ip_dim, text_embed_dim=args.text_dim, lowres_cond=True).parameters()
        )


def run_worker(
    args: argparse.Namespace, config: UNetConfig | None, variant: str, device: str, impl: str = "imagen_core"
) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--impl",
        impl,
        "--optimizer",
        args.optimizer,
        "--ip-dim",
        str(args.ip_dim),
        "--config",
        json.dumps(dataclasses.asdict(config)) if config is not None else "{}",
        "--variant",
        variant,
        "--device",
        device,
        "--batch",
        str(args.batch),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--text-len",
        str(args.text_len),
        "--text-dim",
        str(args.text_dim),
    ]
    if args.imagen_pytorch_path:
        cmd += ["--imagen-pytorch-path", args.imagen_pytorch_path]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if out.returncode != 0:
        raise RuntimeError(f"worker for {impl}/{variant} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=16, help="efficient U-Net first-level width (paper: 128)")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per model process")
    parser.add_argument("--text-len", type=int, default=16)
    parser.add_argument("--text-dim", type=int, default=64)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--against", choices=["imagen-pytorch"], default=None)
    parser.add_argument("--imagen-pytorch-path", default=None, help="scratch folder holding imagen_pytorch 2.1.0")
    parser.add_argument("--ip-dim", type=int, default=32, help="imagen-pytorch SRUnet256 dim")
    parser.add_argument(
        "--cpu-winograd",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--against: imagen_core's wide 3×3 convolutions as Winograd F(2×2, 3×3) on CPU (UNetConfig.cpu_winograd)",
    )
    parser.add_argument(
        "--match",
        choices=["closest", "at-least"],
        default="closest",
        help="--against: imagen_core's width with the parameter count closest to imagen-pytorch's, or the smallest "
        "with at least as many",
    )
    parser.add_argument("--rounds", type=int, default=1, help="--against: alternating separate-process rounds (memory)")
    parser.add_argument("--paired-steps", type=int, default=6, help="--against: interleaved step pairs (speed)")
    parser.add_argument("--optimizer", choices=["adam", "adamw"], default=None)
    parser.add_argument("--impl", default="imagen_core", help=argparse.SUPPRESS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--paired-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.optimizer is None:
        args.optimizer = "adam" if args.against else "adamw"
    if args.worker:
        worker(args)
        return
    if args.paired_worker:
        paired_worker(args)
        return
    if args.against:
        against_imagen_pytorch(args)
        return

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    efficient = efficient_config(args)
    n_eff = count(efficient)
    standard, n_std = matched_standard(args, n_eff)
    gap = (n_std - n_eff) / n_eff
    print(f"64→256 task: x_t 256×256, lowres 64×64 upsampled, batch {args.batch}, device {device}")
    print(f"efficient: channels {efficient.level_channels}, blocks {efficient.res_blocks_per_level}")
    print(f"standard:  channels {standard.level_channels}, blocks 2 per level, attention at 16/8")
    print(f"parameters: efficient {n_eff:,}  standard {n_std:,}  (standard/efficient = {1 + gap:.3f})")
    if abs(gap) > 0.05:
        sys.exit(f"no standard width within ±5% of the efficient count ({gap:+.1%}); change --dim or --heads")

    variants = ["fp32"]
    if device == "cuda":
        variants += ["bf16", "compile"]
    else:
        print("note: no CUDA device; the bf16 autocast and torch.compile variants run only on CUDA")

    memory_key = "cuda_peak_mb" if device == "cuda" else "peak_rss_mb"
    memory_name = "cuda peak MiB" if device == "cuda" else "peak RSS MiB"
    print(
        f"\n{'variant':<9} {'layout':<10} {'params':>12} {'steps/s':>9} {'s/step':>8} {'best s':>8} "
        f"{'TFLOP/step':>11} {memory_name:>14}"
    )
    ratios = {}
    for variant in variants:
        results = {}
        for name, config in (("efficient", efficient), ("standard", standard)):
            r = run_worker(args, config, variant, device)
            results[name] = r
            print(
                f"{variant:<9} {name:<10} {r['params']:>12,} {r['steps_per_s']:>9.3f} {r['s_per_step']:>8.2f} "
                f"{r['s_per_step_min']:>8.2f} {r['tflop_per_step']:>11.3f} {r[memory_key]:>14.0f}",
                flush=True,
            )
        speed = results["efficient"]["steps_per_s"] / results["standard"]["steps_per_s"]
        memory = results["efficient"][memory_key] / results["standard"][memory_key]
        if device == "cpu":
            # The process's own baseline (interpreter, torch, weights) is common to both; report the part that the
            # training step adds as well.
            added = [results[k]["peak_rss_mb"] - results[k]["rss_before_steps_mb"] for k in ("efficient", "standard")]
            print(f"{variant:<9} RSS added by training: efficient {added[0]:.0f}, standard {added[1]:.0f} MiB")
        flop_ratio = results["standard"]["tflop_per_step"] / results["efficient"]["tflop_per_step"]
        print(
            f"{variant:<9} efficient/standard: steps/s ×{speed:.2f}, memory ×{memory:.2f}; "
            f"the standard step does ×{flop_ratio:.2f} the FLOPs"
        )
        ratios[variant] = speed
    print(f"headline: efficient/standard training steps/s = {ratios['fp32']:.2f}x ({device}, fp32, equal params)")


def matched_efficient(args: argparse.Namespace, target: int) -> tuple[UNetConfig, int]:
    """imagen_core's Efficient U-Net (PAPER_SR_256's layout, pixel-shuffle upsampling as imagen-pytorch's, channels-last
    activations, Winograd 3×3 convolutions on CPU unless --no-cpu-winograd) whose parameter count is closest to
    ``target`` (--match closest) or the smallest at least ``target`` (--match at-least: never fewer parameters)."""
    best: tuple[float, UNetConfig, int] | None = None
    # Even widths: only the lowest (8·dim-channel) level has attention, so its heads divide any even dim's channels.
    for dim in range(2 * args.heads, 8 * args.ip_dim, 2):
        if (8 * dim) % args.heads:
            continue
        config = dataclasses.replace(
            efficient_config(argparse.Namespace(**{**vars(args), "dim": dim})),
            upsample_mode="pixel_shuffle",
            channels_last=True,
            cpu_winograd=args.cpu_winograd,
        )
        n = count(config)
        gap = abs(n - target) / target
        if getattr(args, "match", "closest") == "at-least" and n < target:
            continue
        if best is None or gap < best[0]:
            best = (gap, config, n)
        if n > target:
            break
    assert best is not None
    return best[1], best[2]


def against_imagen_pytorch(args: argparse.Namespace) -> None:
    """imagen_core against imagen-pytorch's SRUnet256 at equal parameters: training steps/s and peak memory."""
    device = args.device or "cpu"
    n_theirs = count_imagen_pytorch(args)
    ours, n_ours = matched_efficient(args, n_theirs)
    print(
        f"imagen_core options: upsample_mode={ours.upsample_mode} (imagen-pytorch's pixel_shuffle_upsample too), "
        f"channels_last={ours.channels_last}, cpu_winograd={ours.cpu_winograd}"
    )
    print(f"64→256 task, batch {args.batch}, {args.text_len} text tokens of width {args.text_dim}, {args.optimizer}")
    print(f"imagen-pytorch SRUnet256(dim={args.ip_dim}): {n_theirs:,} parameters")
    print(f"imagen_core efficient (dim {ours.dim}): {n_ours:,} parameters (×{n_ours / n_theirs:.3f})")
    results: dict[str, list[dict]] = {"imagen_core": [], "imagen-pytorch": []}
    for round_ in range(args.rounds):
        for impl in ("imagen_core", "imagen-pytorch"):
            r = run_worker(args, ours if impl == "imagen_core" else None, "fp32", device, impl=impl)
            results[impl].append(r)
            added = r["peak_rss_mb"] - r["rss_before_steps_mb"]
            print(
                f"round {round_ + 1} {impl:<15} steps/s {r['steps_per_s']:.3f}  CPU s/step {r['cpu_s_per_step']:.2f}  "
                f"peak RSS {r['peak_rss_mb']:.0f} MiB  added by training {added:.0f} MiB",
                flush=True,
            )
    best = {impl: max(rs, key=lambda r: r["steps_per_s"]) for impl, rs in results.items()}
    speed = best["imagen_core"]["steps_per_s"] / best["imagen-pytorch"]["steps_per_s"]
    cpu = min(r["cpu_s_per_step"] for r in results["imagen-pytorch"]) / min(
        r["cpu_s_per_step"] for r in results["imagen_core"]
    )
    print(f"separate processes, best CPU time per step: imagen-pytorch / imagen_core = {cpu:.2f}x")
    # Speed, robustly: both models in one process, steps interleaved, the median of adjacent pairs' ratios.
    cmd = [sys.executable, __file__, "--paired-worker", "--config", json.dumps(dataclasses.asdict(ours))]
    cmd += ["--batch", str(args.batch), "--steps", str(args.paired_steps), "--threads", str(args.threads)]
    cmd += ["--text-len", str(args.text_len), "--text-dim", str(args.text_dim), "--ip-dim", str(args.ip_dim)]
    if args.imagen_pytorch_path:
        cmd += ["--imagen-pytorch-path", args.imagen_pytorch_path]
    out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    if out.returncode != 0:
        raise RuntimeError(f"paired worker failed:\n{out.stderr[-4000:]}")
    paired = json.loads(out.stdout.strip().splitlines()[-1])
    wall_ratio = statistics.median(paired["pair_ratios_wall"])
    cpu_ratio = statistics.median(paired["pair_ratios_cpu"])
    print(
        f"interleaved in one process, {args.paired_steps} pairs: median step time imagen-pytorch / imagen_core = "
        f"{wall_ratio:.2f}x wall, {cpu_ratio:.2f}x CPU (pairs: "
        + ", ".join(f"{r:.2f}" for r in paired["pair_ratios_wall"])
        + ")"
    )
    memory = min(r["peak_rss_mb"] for r in results["imagen_core"]) / min(
        r["peak_rss_mb"] for r in results["imagen-pytorch"]
    )
    print(f"separate processes, best steps/s: imagen_core / imagen-pytorch = {speed:.2f}x")
    print(
        f"headline: imagen_core/imagen-pytorch training steps/s = {wall_ratio:.2f}x (interleaved median) at peak "
        f"memory ×{memory:.2f} ({device}, fp32, {n_ours / 1e6:.1f}M vs {n_theirs / 1e6:.1f}M parameters)"
    )


if __name__ == "__main__":
    main()
