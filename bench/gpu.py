"""imagen_core on one accelerator: three measurements, one JSON document on stdout.

1. efficient_vs_standard: training steps/s and peak memory of the paper's 64→256 Efficient U-Net (PAPER_SR_256, the
   paper-faithful 452.6M preset, T5-XXL width) against the Improved-DDPM/Palette layout at equal parameters
   (bench/unet_speed.py's matched width), x_t 256², batch --train-batch, bf16 autocast, AdamW.
2. base64_sampling: the 2.0B base model (PAPER_BASE_64) drawing 64×64 images at 50 DDIM steps with classifier-free
   guidance batched into one forward, bf16 autocast, with and without torch.compile: images/s.
3. if_vs_diffusers: the same random-init IF-I-shaped UNet2DConditionModel sampled by diffusers' IFPipeline and, after
   imagen_core.convert, by imagen_core (DDPM with learned variance, the same steps and guidance, bf16 autocast):
   images/s of each and their ratio (goal ≥ 1.0). The IF-I shape is IF's layout (64 px, widths w·(1,2,3,4),
   3 blocks per level, attention at 32/16/8 with 64 channels per head, T5 4096 projected to 4w) at --if-width.

    python bench/gpu.py             # CUDA; a few minutes on one H200
    python bench/gpu.py --quick     # CPU, tiny shapes, seconds: the CI smoke run of every code path but compile

Random weights throughout: speed does not depend on them. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from imagen_core import convert  # noqa: E402
from imagen_core.config import PAPER_BASE_64, PAPER_SR_256, DiffusionConfig  # noqa: E402
from imagen_core.diffusion import GaussianDiffusion  # noqa: E402
from imagen_core.imagen import generators_for, sample_stage, with_sampler  # noqa: E402
from imagen_core.sampling import get_timesteps, model_denoiser, noise_like, sample_ddim  # noqa: E402
from imagen_core.unet import build_unet, count_parameters, upsample_lowres  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def _timed(fn: Callable[[], None], *, warmup: int, repeats: int, device: torch.device) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


# ---- 1. Efficient U-Net against the standard layout, training ----


def _train_speed(config, args: argparse.Namespace, device: torch.device) -> dict:
    """Median steps/s and peak memory of AdamW training steps of one 64→256 U-Net."""
    size = args.sr_size
    torch.manual_seed(0)
    unet = build_unet(config).to(device).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    b = args.train_batch
    x_t = torch.randn(b, 3, size, size, device=device)
    lowres = upsample_lowres(torch.randn(b, 3, size // 4, size // 4, device=device), size)
    level, time_ = torch.rand(b, device=device), torch.rand(b, device=device)
    text_embeds = torch.randn(b, 16, args.text_dim, device=device)
    text_mask = torch.ones(b, 16, dtype=torch.bool, device=device)
    target = torch.randn_like(x_t)

    def step() -> None:
        with _autocast(device, args.bf16):
            pred = unet(
                x_t,
                time_,
                text_embeds=text_embeds,
                text_mask=text_mask,
                lowres_cond_img=lowres,
                lowres_noise_level=level,
            )
            loss = (pred.float() - target).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    _peak_reset(device)
    times = _timed(step, warmup=1, repeats=args.train_steps, device=device)
    return {
        "params": count_parameters(unet),
        "steps_per_s": 1.0 / statistics.median(times),
        "peak_mb": _peak_mb(device),
    }


def efficient_vs_standard(args: argparse.Namespace, device: torch.device) -> dict:
    import unet_speed

    size = args.sr_size
    shape_args = argparse.Namespace(dim=args.sr_dim, heads=8 if not args.quick else 4, text_dim=args.text_dim)
    efficient = dataclasses.replace(
        PAPER_SR_256, image_size=size, dim=args.sr_dim, text_embed_dim=args.text_dim, cond_dim=4 * args.sr_dim
    )
    if args.quick:
        efficient = dataclasses.replace(efficient, num_heads=4, norm_groups=8)
    with torch.device("meta"):
        n_eff = count_parameters(build_unet(efficient))
    standard, _ = unet_speed.matched_standard(shape_args, n_eff)
    standard = dataclasses.replace(standard, image_size=size, norm_groups=efficient.norm_groups)
    results = {
        name: _train_speed(config, args, device) for name, config in (("efficient", efficient), ("standard", standard))
    }
    eff, std = results["efficient"], results["standard"]
    results["speed_ratio"] = eff["steps_per_s"] / std["steps_per_s"]
    results["memory_ratio"] = eff["peak_mb"] / std["peak_mb"] if eff["peak_mb"] and std["peak_mb"] else None
    results["setup"] = {"image_size": size, "batch": args.train_batch, "bf16": args.bf16, "dim": args.sr_dim}
    return results


# ---- 2. The 2B base model sampling ----


def base64_sampling(args: argparse.Namespace, device: torch.device) -> dict:
    config = PAPER_BASE_64
    if args.quick:
        config = dataclasses.replace(config, dim=16, head_dim=16, text_embed_dim=args.text_dim, text_proj_dim=16)
        config = dataclasses.replace(config, cond_dim=64, norm_groups=8)
    torch.manual_seed(0)
    unet = build_unet(config).to(device).eval().requires_grad_(False)
    diffusion = GaussianDiffusion(DiffusionConfig())
    b = args.sample_batch
    text_embeds = torch.randn(b, 16, config.text_embed_dim, device=device)
    text_mask = torch.ones(b, 16, dtype=torch.bool, device=device)
    generators = generators_for(range(b))

    def run(model) -> Callable[[], None]:
        denoiser = model_denoiser(model, diffusion, text_embeds=text_embeds, text_mask=text_mask, cond_scale=5.0)

        def sample() -> None:
            with torch.inference_mode(), _autocast(device, args.bf16):
                x = noise_like((b, 3, config.image_size, config.image_size), generators, device=device)
                sample_ddim(denoiser, x, get_timesteps(args.ddim_steps, device=device), log_snr=diffusion.log_snr)

        return sample

    result: dict = {"params": count_parameters(unet), "batch": b, "steps": args.ddim_steps, "bf16": args.bf16}
    _peak_reset(device)
    times = _timed(run(unet), warmup=1, repeats=args.repeats, device=device)
    result["eager_images_per_s"] = b / min(times)
    result["eager_peak_mb"] = _peak_mb(device)
    if args.compile:
        try:
            compiled = torch.compile(unet)
            start = time.perf_counter()
            run(compiled)()
            _sync(device)
            result["compile_s"] = time.perf_counter() - start
            times = _timed(run(compiled), warmup=0, repeats=args.repeats, device=device)
            result["compiled_images_per_s"] = b / min(times)
            result["compile_speedup"] = result["compiled_images_per_s"] / result["eager_images_per_s"]
        except Exception as exc:
            result["compiled_images_per_s"] = None
            result["compile_error"] = f"{type(exc).__name__}: {exc}"[:2000]
    else:
        result["compiled_images_per_s"] = None
        result["compile_note"] = "torch.compile skipped (--quick or --no-compile)"
    return result


# ---- 3. imagen_core against diffusers' IFPipeline on the same weights ----


def if_unet_kwargs(width: int, text_dim: int, *, quick: bool) -> dict:
    """IF-I's layout (diffusers' UNet2DConditionModel options as IF sets them) at width ``width``."""
    return dict(
        sample_size=64 if not quick else 16,
        layers_per_block=3 if not quick else 1,
        block_out_channels=[width * m for m in ((1, 2, 3, 4) if not quick else (1, 2))],
        down_block_types=(
            ["ResnetDownsampleBlock2D"] + ["SimpleCrossAttnDownBlock2D"] * 3
            if not quick
            else ["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"]
        ),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=(
            ["SimpleCrossAttnUpBlock2D"] * 3 + ["ResnetUpsampleBlock2D"]
            if not quick
            else ["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"]
        ),
        in_channels=3,
        out_channels=6,
        cross_attention_dim=4 * width if not quick else width,
        encoder_hid_dim=text_dim,
        attention_head_dim=64 if not quick else 16,
        addition_embed_type="text",
        addition_embed_type_num_heads=64 if not quick else 4,
        cross_attention_norm="group_norm",
        resnet_time_scale_shift="scale_shift",
        act_fn="gelu",
    )


def if_vs_diffusers(args: argparse.Namespace, device: torch.device) -> dict:
    from diffusers import DDPMScheduler, IFPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    theirs = UNet2DConditionModel(**if_unet_kwargs(args.if_width, args.text_dim, quick=args.quick)).eval()
    scheduler = DDPMScheduler(
        beta_schedule="squaredcos_cap_v2",
        thresholding=True,
        dynamic_thresholding_ratio=0.95,
        sample_max_value=1.5,
        variance_type="learned_range",
    )
    stage = convert.stage_config_from_diffusers(dict(theirs.config), dict(scheduler.config))
    ours = build_unet(stage.unet)
    ours.load_state_dict(convert.unet_state_dict_from_diffusers(theirs.state_dict()))
    theirs, ours = theirs.to(device).requires_grad_(False), ours.to(device).eval().requires_grad_(False)
    pipe = IFPipeline(
        tokenizer=None,
        text_encoder=None,
        unet=theirs,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    b, steps, cfg = args.sample_batch, args.if_steps, 7.0
    text_embeds = torch.randn(b, 77, args.text_dim, device=device)
    null_embeds = torch.randn(1, 77, args.text_dim, device=device)
    mask = torch.ones(b, 77, dtype=torch.bool, device=device)
    stage = with_sampler(stage, steps=steps, cond_scale=cfg)
    diffusion = GaussianDiffusion(stage.diffusion)

    def run_diffusers() -> None:
        with torch.inference_mode(), _autocast(device, args.bf16):
            pipe(
                prompt_embeds=text_embeds,
                negative_prompt_embeds=null_embeds.expand(b, -1, -1),
                num_inference_steps=steps,
                guidance_scale=cfg,
                generator=generators_for(range(b)),
                output_type="pt",
            )

    def run_ours() -> None:
        with torch.inference_mode(), _autocast(device, args.bf16):
            sample_stage(
                ours,
                diffusion,
                stage,
                text_embeds=text_embeds,
                text_mask=mask,
                generators=generators_for(range(b)),
                null_text_embeds=null_embeds,
                null_text_mask=mask[:1],
            )

    result: dict = {"params": count_parameters(ours), "batch": b, "steps": steps, "bf16": args.bf16}
    # Alternate the two so that a shared machine's load falls on both alike.
    times: dict[str, list[float]] = {"diffusers": [], "imagen_core": []}
    for fn in (run_diffusers, run_ours):
        _timed(fn, warmup=1, repeats=0, device=device)
    for _ in range(args.repeats):
        for name, fn in (("diffusers", run_diffusers), ("imagen_core", run_ours)):
            times[name] += _timed(fn, warmup=0, repeats=1, device=device)
    for name in times:
        result[f"{name}_images_per_s"] = b / min(times[name])
    result["ratio"] = result["imagen_core_images_per_s"] / result["diffusers_images_per_s"]
    result["setup"] = {"if_width": args.if_width, "scheduler": "DDPM learned_range", "guidance": cfg}
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU, tiny shapes: the CI smoke run")
    parser.add_argument("--device", default=None)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--compile", action="store_true", help="run the torch.compile variant in --quick mode too")
    parser.add_argument("--only", choices=["efficient_vs_standard", "base64_sampling", "if_vs_diffusers"])
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.quick else "cpu"))
    if args.quick:
        sizes = dict(sr_size=64, sr_dim=8, text_dim=32, train_batch=1, train_steps=2, sample_batch=2, ddim_steps=4)
        sizes.update(if_width=32, if_steps=4, repeats=1, bf16=False, compile=args.compile)
        torch.set_num_threads(1)
    else:
        sizes = dict(sr_size=256, sr_dim=128, text_dim=4096, train_batch=8, train_steps=10, sample_batch=8)
        sizes.update(ddim_steps=50, if_width=320, if_steps=50, repeats=3, bf16=True, compile=not args.no_compile)
    for key, value in sizes.items():
        setattr(args, key, value)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    started = time.perf_counter()
    report: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "quick": args.quick,
        "torch": torch.__version__,
    }
    sections = {
        "efficient_vs_standard": efficient_vs_standard,
        "base64_sampling": base64_sampling,
        "if_vs_diffusers": if_vs_diffusers,
    }
    for name, fn in sections.items():
        if args.only and name != args.only:
            continue
        section_start = time.perf_counter()
        try:
            report[name] = fn(args, device)
        except Exception as exc:  # one section's failure must not lose the others' figures
            report[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        report[name]["seconds"] = time.perf_counter() - section_start
        # Each section as it ends, on stderr: a run stopped later keeps what it measured.
        print(json.dumps({name: report[name]}), file=sys.stderr, flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    report["seconds"] = time.perf_counter() - started
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
