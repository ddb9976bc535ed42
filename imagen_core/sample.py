"""Command line: draw images from one checkpoint or a cascade of them.

    python -m imagen_core.sample --checkpoint imagen_core/assets/toy_base.safetensors \\
        --prompt "a red circle" --seed 0 --out x.png

Several ``--checkpoint``s form a cascade (base first); ``--text-encoder`` points a converted DeepFloyd IF cascade at
a local T5 folder. Several ``--prompt``s and/or ``--num-images`` give several
images, seeds ``seed, seed + 1, ...``, written side by side into one PNG. Sampler options override the stage's own
``SamplerConfig`` (for every stage).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m imagen_core.sample", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", action="append", required=True, help="a stage checkpoint; repeat for a cascade")
    p.add_argument("--prompt", action="append", required=True, help="caption; repeat for several")
    p.add_argument("--seed", type=int, default=0, help="seed of the first image; image i uses seed + i")
    p.add_argument("--num-images", type=int, default=1, help="images per prompt")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--steps", type=int, help="sampler steps")
    p.add_argument("--cond-scale", type=float, help="classifier-free guidance weight w")
    p.add_argument("--sampler", choices=["ddim", "ancestral", "dpmpp"])
    p.add_argument("--thresholding", choices=["dynamic", "static", "none"])
    p.add_argument("--lowres-noise-level", type=float, help="noise augmentation level for SR stages")
    p.add_argument("--scale", type=int, default=1, help="enlarge the PNG by this factor (nearest neighbour)")
    p.add_argument("--text-encoder", help="a hub id or local T5 folder instead of the one the base checkpoint names")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from PIL import Image

    from imagen_core.imagen import Imagen
    from imagen_core.training import tensor_to_uint8

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for path in args.checkpoint:
        if not Path(path).is_file():
            print(f"error: --checkpoint {path}: no such file", file=sys.stderr)
            return 2
    imagen = Imagen.from_checkpoints(args.checkpoint, device=args.device, text_encoder=args.text_encoder).eval()
    overrides = {
        "steps": args.steps,
        "cond_scale": args.cond_scale,
        "sampler": args.sampler,
        "thresholding": args.thresholding,
        "lowres_noise_level": args.lowres_noise_level,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    samplers = [dataclasses.replace(stage.sampler, **overrides) for stage in imagen.stages]
    prompts = [p for p in args.prompt for _ in range(args.num_images)]
    seeds = [args.seed + i for i in range(len(prompts))]
    images = imagen.sample(prompts, seeds=seeds, samplers=samplers)
    strip = np.concatenate(list(tensor_to_uint8(images)), axis=1)
    picture = Image.fromarray(strip)
    if args.scale > 1:
        picture = picture.resize((picture.width * args.scale, picture.height * args.scale), Image.Resampling.NEAREST)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out)
    print(f"wrote {len(prompts)} image(s) to {out} (seeds {seeds[0]}..{seeds[-1]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
