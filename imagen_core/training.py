"""Train one stage of the cascade (Imagen, arXiv 2205.11487, App. F) on an image-caption folder or the toy world.

What a step does: draw a batch, look up its (cached) text embeddings, compute the stage's loss (``imagen.stage_loss``:
noise conditioning augmentation and crops for SR stages, conditioning dropout), backpropagate under bf16 autocast
where the device supports it (CUDA; fp32 on CPU), clip the gradient norm, step Adam (β 0.9, 0.999, ε 1e-8) or
Adafactor with linear warmup, and update an EMA copy of the weights.

A run writes into ``out_dir``: ``model.safetensors`` (EMA weights + config: what ``load_checkpoint`` and
``python -m imagen_core.sample`` read) and ``train_state.pt`` (online weights, optimizer, scheduler, step and every
RNG state), so that ``resume=True`` continues exactly where it stopped. All randomness comes from two generators
seeded from ``TrainRun.seed``: a ``torch.Generator`` (times, noise, dropout, crops, folder batches) and a numpy
``Generator`` (toy-world scenes).

Data: ``data="toyworld"``, or a folder of images with ``captions.csv`` (header ``file,caption``) or
``captions.jsonl`` (``{"file": ..., "caption": ...}`` per line); batches are drawn uniformly with replacement.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from imagen_core.checkpoints import (
    is_tiny_encoder_name,
    load_training_state,
    save_checkpoint,
    save_training_state,
)
from imagen_core.config import (
    TINY_T5_DIM,
    DiffusionConfig,
    SamplerConfig,
    StageConfig,
    TrainingConfig,
    UNetConfig,
)
from imagen_core.diffusion import GaussianDiffusion
from imagen_core.imagen import stage_loss
from imagen_core.text_encoder import TextEncoder, pad_sequences

Precision = Literal["auto", "bf16", "fp32"]
CHECKPOINT_NAME = "model.safetensors"
STATE_NAME = "train_state.pt"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


@dataclass(frozen=True)
class TrainRun:
    """One training run: the stage to train and everything about the run that is not the model."""

    stage: StageConfig
    out_dir: str
    # "toyworld", or a folder of images with captions.csv / captions.jsonl (or the file given in ``captions``).
    data: str = "toyworld"
    captions: str | None = None
    # None: the stage's TrainingConfig.num_steps / batch_size.
    steps: int | None = None
    batch_size: int | None = None
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 50
    precision: Precision = "auto"
    device: str = "cpu"
    # torch intra-op threads; None leaves torch's default. Share the machine: 1 on a busy CPU.
    num_threads: int | None = None
    toy_categories: tuple[str, ...] = ("Colors", "Counting", "Positional")
    # Seed of the tiny offline T5 when the stage uses one (StageConfig.text_encoder_name "tiny-t5-byt5").
    text_encoder_seed: int = 0
    text_cache_dir: str | None = None

    @property
    def num_steps(self) -> int:
        return self.steps if self.steps is not None else self.stage.training.num_steps

    @property
    def resolved_batch_size(self) -> int:
        return self.batch_size if self.batch_size is not None else self.stage.training.batch_size


@dataclass
class TrainResult:
    stage: StageConfig
    unet: nn.Module
    ema: nn.Module
    text_encoder: TextEncoder
    step: int
    losses: list[float] = field(default_factory=list)
    checkpoint: Path | None = None


# ---- Recipes ----

# The toy base model: the paper's base layout at toy scale, small enough to train on one CPU thread (width 32,
# levels 32/16/8 px, one residual block per level, attention at 8×8 only; about 1.2M parameters, 5 MB). Written out
# field by field rather than derived from config.TOY_BASE_32, so that the shipped checkpoint's recipe stays put.
TOY_BASE_UNET = UNetConfig(
    kind="base",
    image_size=32,
    dim=32,
    channel_mults=(1, 2, 2),
    num_res_blocks=1,
    attn_resolutions=(8,),
    num_heads=4,
    text_embed_dim=TINY_T5_DIM,
    norm_groups=8,
)
TOY_BASE_STAGE = StageConfig(
    unet=TOY_BASE_UNET,
    diffusion=DiffusionConfig(schedule="cosine", pred_objective="eps", cond_drop_prob=0.1),
    sampler=SamplerConfig(sampler="ddim", steps=50, cond_scale=5.0, thresholding="dynamic"),
    training=TrainingConfig(
        optimizer="adam", lr=1e-3, warmup_steps=100, batch_size=32, num_steps=4000, ema_decay=0.999
    ),
    image_size=32,
    text_encoder_name="tiny-t5-byt5",
    text_embed_dim=TINY_T5_DIM,
    max_text_len=64,
)


def toy_base_recipe(out_dir: str, **changes: Any) -> TrainRun:
    """The committed recipe of imagen_core/assets/toy_base.safetensors: TOY_BASE_STAGE on the whole toy world."""
    return dataclasses.replace(TrainRun(stage=TOY_BASE_STAGE, out_dir=out_dir, seed=0, num_threads=1), **changes)


def toy_learning_recipe(out_dir: str, **changes: Any) -> TrainRun:
    """The learning test's run: the same network on the Colors category only, 200 steps (a few CPU minutes)."""
    stage = dataclasses.replace(
        TOY_BASE_STAGE,
        training=TrainingConfig(lr=2e-3, warmup_steps=50, batch_size=32, num_steps=200, ema_decay=0.99),
    )
    run = TrainRun(
        stage=stage, out_dir=out_dir, seed=0, num_threads=1, toy_categories=("Colors",), checkpoint_every=10**9
    )
    return dataclasses.replace(run, **changes)


RECIPES: dict[str, Callable[..., TrainRun]] = {"toy-base": toy_base_recipe, "toy-learning": toy_learning_recipe}


# ---- Data ----


class ToyWorldData:
    """Endless toy-world batches: uint8 scenes from ``toyworld.ToyWorld`` as float [B,3,H,W] in [−1, 1]."""

    def __init__(self, *, image_size: int, categories: Sequence[str], seed: int) -> None:
        from imagen_core.toyworld import ToyWorld

        self.world = ToyWorld(image_size=image_size, categories=categories)
        self.rng = np.random.default_rng(seed)

    @property
    def captions(self) -> list[str]:
        return self.world.captions

    def next_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, list[str]]:
        images, captions = self.world.sample(batch_size, self.rng)
        return uint8_to_tensor(images), captions

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


class ImageCaptionFolder:
    """Images and captions from a folder; each image is resized (shorter side) and centre-cropped to ``image_size``."""

    def __init__(self, root: str | Path, *, image_size: int, captions: str | Path | None = None) -> None:
        self.root = Path(root)
        self.image_size = image_size
        if not self.root.is_dir():
            raise FileNotFoundError(f"data folder {self.root} does not exist")
        path = Path(captions) if captions is not None else self._find_captions()
        self.items = read_captions(path, self.root)
        if not self.items:
            raise ValueError(f"{path}: no rows")

    def _find_captions(self) -> Path:
        for name in ("captions.csv", "captions.jsonl"):
            if (self.root / name).exists():
                return self.root / name
        raise FileNotFoundError(f"{self.root}: no captions.csv or captions.jsonl (or pass captions=...)")

    @property
    def captions(self) -> list[str]:
        return sorted({caption for _, caption in self.items})

    def load_image(self, path: Path) -> np.ndarray:
        from PIL import Image

        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = self.image_size / min(im.size)
            size = (max(self.image_size, round(im.width * scale)), max(self.image_size, round(im.height * scale)))
            im = im.resize(size, Image.Resampling.BICUBIC)
            left, top = (im.width - self.image_size) // 2, (im.height - self.image_size) // 2
            im = im.crop((left, top, left + self.image_size, top + self.image_size))
            return np.asarray(im, dtype=np.uint8)

    def next_batch(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, list[str]]:
        index = torch.randint(0, len(self.items), (batch_size,), generator=generator, device=generator.device).tolist()
        images = np.stack([self.load_image(self.items[i][0]) for i in index])
        return uint8_to_tensor(images), [self.items[i][1] for i in index]

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def read_captions(path: Path, root: Path) -> list[tuple[Path, str]]:
    """Rows (image path, caption) from a CSV (``file,caption``) or JSONL file; errors name the file and line."""
    rows: list[tuple[int, dict[str, Any]]] = []
    if not path.exists():
        raise FileNotFoundError(f"captions file {path} does not exist")
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append((line_no, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}, line {line_no}: not valid JSON ({exc.msg})") from None
    elif path.suffix == ".csv":
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"file", "caption"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(
                    f"{path}, line 1: the header needs columns file and caption; missing {sorted(missing)}"
                )
            rows.extend((line_no, row) for line_no, row in enumerate(reader, start=2))
    else:
        raise ValueError(f"{path}: captions must be a .csv or .jsonl file")
    items = []
    for line_no, row in rows:
        for key in ("file", "caption"):
            if not isinstance(row, dict) or not isinstance(row.get(key), str) or not row[key].strip():
                raise ValueError(f"{path}, line {line_no}: field {key!r} is missing or empty")
        image = root / row["file"]
        if not image.is_file():
            raise FileNotFoundError(f"{path}, line {line_no}: field 'file': no image at {image}")
        if image.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(
                f"{path}, line {line_no}: field 'file': {image.name} is not a {sorted(IMAGE_SUFFIXES)} file"
            )
        items.append((image, row["caption"]))
    return items


def uint8_to_tensor(images: np.ndarray) -> Tensor:
    """uint8 [B,H,W,3] -> float [B,3,H,W] in [−1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


def tensor_to_uint8(images: Tensor) -> np.ndarray:
    """float [B,3,H,W] in [−1, 1] -> uint8 [B,H,W,3]."""
    return images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


# ---- Text ----


def text_encoder_for(stage: StageConfig, *, seed: int = 0, cache_dir: str | Path | None = None) -> TextEncoder:
    """The stage's text encoder: the tiny offline T5 for ``tiny-t5*`` names, else ``from_pretrained``."""
    if is_tiny_encoder_name(stage.text_encoder_name):
        return TextEncoder.tiny(seed=seed, max_length=stage.max_text_len, cache_dir=cache_dir)
    return TextEncoder.from_pretrained(stage.text_encoder_name, max_length=stage.max_text_len, cache_dir=cache_dir)


class TextEmbeddingTable:
    """Embeddings of a known caption set, computed once and kept in memory as unpadded rows [L_i, D]."""

    def __init__(self, encoder: TextEncoder, captions: Sequence[str], *, chunk: int = 256) -> None:
        self.encoder = encoder
        self.rows: dict[str, Tensor] = {}
        self.add(captions, chunk=chunk)

    def add(self, captions: Sequence[str], *, chunk: int = 256) -> None:
        todo = [c for c in dict.fromkeys(captions) if c not in self.rows]
        for i in range(0, len(todo), chunk):
            part = todo[i : i + chunk]
            embeds, mask = self.encoder.encode(part)
            for j, caption in enumerate(part):
                self.rows[caption] = embeds[j, mask[j]].cpu()

    def lookup(self, captions: Sequence[str], device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
        self.add(captions)
        return pad_sequences([self.rows[c] for c in captions], device=device)


# ---- Optimisation ----


def make_optimizer(params, training: TrainingConfig) -> torch.optim.Optimizer:
    """Adam (App. F: β 0.9, 0.999, ε 1e-8) or Adafactor (the paper's base model; ``torch.optim.Adafactor``)."""
    if training.optimizer == "adam":
        return torch.optim.Adam(params, lr=training.lr, betas=training.adam_betas, eps=training.adam_eps)
    if training.optimizer == "adafactor":
        return torch.optim.Adafactor(params, lr=training.lr)
    raise ValueError(f"TrainingConfig.optimizer: unknown optimizer {training.optimizer!r}")


def warmup_lambda(warmup_steps: int) -> Callable[[int], float]:
    """Linear warmup from 0 to the base learning rate over ``warmup_steps``, then constant (App. F)."""
    return lambda step: min(1.0, (step + 1) / max(1, warmup_steps))


def lr_lambda(training: TrainingConfig) -> Callable[[int], float]:
    """The learning-rate multiplier of a stage: linear warmup (App. F), then constant or, with
    ``lr_schedule="cosine"``, a half cosine from 1 down to ``lr_min_ratio`` at ``num_steps`` (held there after)."""
    warmup = warmup_lambda(training.warmup_steps)
    if training.lr_schedule == "constant":
        return warmup
    decay_steps = max(1, training.num_steps - training.warmup_steps)
    floor = training.lr_min_ratio

    def schedule(step: int) -> float:
        if step < training.warmup_steps:
            return warmup(step)
        progress = min(1.0, (step - training.warmup_steps) / decay_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return schedule


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, *, decay: float, step: int) -> None:
    """ema ← d·ema + (1 − d)·model, with d = min(decay, (1 + step)/(10 + step)) so early averages forget faster."""
    d = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach().float(), 1 - d)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def autocast_dtype(precision: Precision, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA devices that support it ("auto") or when asked ("bf16"); None means fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


# ---- The loop ----


def _rng_state(generator: torch.Generator, data) -> dict[str, Any]:
    return {"torch_global": torch.get_rng_state(), "generator": generator.get_state(), "data": data.state_dict()}


def train(
    run: TrainRun,
    *,
    resume: bool = False,
    text_encoder: TextEncoder | None = None,
    log: Callable[[str], None] | None = None,
    stop_after: int | None = None,
) -> TrainResult:
    """Train ``run.stage`` for ``run.num_steps`` steps (continuing from ``run.out_dir`` with ``resume``).

    ``stop_after`` stops early after that many steps *of this call* and writes a checkpoint, as an interruption
    would (used to test resuming).
    """
    from imagen_core.unet import build_unet

    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if run.num_threads is not None:
        torch.set_num_threads(run.num_threads)
    device = torch.device(run.device)
    stage = run.stage
    out_dir = Path(run.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(run.seed)
    generator = torch.Generator(device=device).manual_seed(run.seed)
    if run.data == "toyworld":
        data = ToyWorldData(image_size=stage.image_size, categories=run.toy_categories, seed=run.seed)
    else:
        data = ImageCaptionFolder(run.data, image_size=stage.image_size, captions=run.captions)
    text_encoder = text_encoder or text_encoder_for(stage, seed=run.text_encoder_seed, cache_dir=run.text_cache_dir)
    text_encoder.to(device)
    table = TextEmbeddingTable(text_encoder, data.captions)

    unet = build_unet(stage.unet).to(device)
    ema = copy.deepcopy(unet).float().eval().requires_grad_(False)
    diffusion = GaussianDiffusion(stage.diffusion)
    optimizer = make_optimizer(unet.parameters(), stage.training)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(stage.training))
    step = 0
    state_path = out_dir / STATE_NAME
    if resume and state_path.exists():
        state = load_training_state(state_path)
        if state["stage_config"] != dataclasses.asdict(stage):
            raise ValueError(f"{state_path}: the saved run trained a different stage config; refusing to resume")
        unet.load_state_dict(state["unet"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        torch.set_rng_state(state["rng"]["torch_global"])
        generator.set_state(state["rng"]["generator"])
        data.load_state_dict(state["rng"]["data"])
        log(f"resumed from {state_path} at step {step}")

    amp_dtype = autocast_dtype(run.precision, device)
    batch_size = run.resolved_batch_size
    result = TrainResult(stage=stage, unet=unet, ema=ema, text_encoder=text_encoder, step=step)

    def checkpoint() -> None:
        result.checkpoint = save_checkpoint(
            out_dir / CHECKPOINT_NAME, unet=ema, stage=stage, text_encoder=text_encoder, step=step
        )
        save_training_state(
            state_path,
            {
                "stage_config": dataclasses.asdict(stage),
                "run": dataclasses.asdict(run),
                "step": step,
                "unet": unet.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_state(generator, data),
            },
        )

    unet.train()
    started, window_start, window_losses = time.perf_counter(), time.perf_counter(), []
    steps_this_call = 0
    while step < run.num_steps:
        images, captions = data.next_batch(batch_size, generator)
        images = images.to(device)
        text_embeds, text_mask = table.lookup(captions, device=device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = stage_loss(
                unet, diffusion, stage, images, text_embeds=text_embeds, text_mask=text_mask, generator=generator
            )
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower the learning rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if stage.training.grad_clip_norm:
            nn.utils.clip_grad_norm_(unet.parameters(), stage.training.grad_clip_norm)
        optimizer.step()
        scheduler.step()
        ema_update(ema, unet, decay=stage.training.ema_decay, step=step)
        step += 1
        steps_this_call += 1
        result.losses.append(loss.item())
        window_losses.append(loss.item())
        if step % run.log_every == 0 or step == run.num_steps:
            elapsed = time.perf_counter() - window_start
            log(
                f"step {step}/{run.num_steps} loss {np.mean(window_losses):.4f} "
                f"lr {scheduler.get_last_lr()[0]:.2e} {len(window_losses) / elapsed:.2f} steps/s"
            )
            window_start, window_losses = time.perf_counter(), []
        stopping = stop_after is not None and steps_this_call >= stop_after
        if step % run.checkpoint_every == 0 or step == run.num_steps or stopping:
            checkpoint()
        if stopping:
            break
    result.step = step
    log(f"done: {step} steps in {time.perf_counter() - started:.0f}s; checkpoint {out_dir / CHECKPOINT_NAME}")
    unet.eval()
    return result
