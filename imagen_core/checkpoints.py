"""Checkpoints that carry their own config, nanoGPT style: ``load_checkpoint(path)`` rebuilds the model alone.

A checkpoint is one safetensors file:

- tensors ``unet.*``: the U-Net weights (the EMA weights when training wrote it);
- tensors ``text_encoder.*``: the weights of the tiny offline T5, when the stage uses it (a few hundred KB), so
  that a toy checkpoint does not depend on how a library version happens to initialise a random T5; a real T5 is
  referred to by its hub id or path instead;
- metadata (strings): ``format``, ``stage_config`` (``dataclasses.asdict(StageConfig)`` as JSON),
  ``text_encoder`` (JSON: ``{"kind": "tiny"}`` or ``{"kind": "pretrained", "name": ...}``), ``step``, ``weights``.

Training state for resuming (online weights, optimizer, scheduler, step, every RNG) lives beside it in a
``torch.save`` file, written by ``save_training_state``. Both writes are atomic (temporary file, then rename).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imagen_core.config import StageConfig
from imagen_core.text_encoder import TextEncoder

FORMAT = "imagen_core.stage/1"
TINY_TEXT_ENCODER_NAMES = ("tiny-t5-byt5",)


@dataclass
class LoadedStage:
    """What ``load_checkpoint`` returns: the network (eval mode), its stage config, its text encoder, metadata."""

    unet: nn.Module
    stage: StageConfig
    text_encoder: TextEncoder | None
    metadata: dict[str, str]

    @property
    def step(self) -> int | None:
        return int(self.metadata["step"]) if self.metadata.get("step") else None


def _atomic_target(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def save_checkpoint(
    path: str | Path,
    *,
    unet: nn.Module,
    stage: StageConfig,
    text_encoder: TextEncoder | None = None,
    step: int | None = None,
    weights: str = "ema",
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``unet``'s weights and ``stage`` (and a tiny text encoder's weights) to one safetensors file."""
    from safetensors.torch import save_file

    path = Path(path)
    # clone(): safetensors refuses tensors that share storage (T5's tied input embeddings, views).
    tensors = {f"unet.{k}": v.detach().cpu().clone().contiguous() for k, v in unet.state_dict().items()}
    if (
        text_encoder is not None
        and text_encoder.tokenizer_name == "byt5"
        and is_tiny_encoder_name(stage.text_encoder_name)
    ):
        encoder_meta = {"kind": "tiny", "max_length": text_encoder.max_length}
        for k, v in text_encoder.encoder.state_dict().items():
            tensors[f"text_encoder.{k}"] = v.detach().cpu().clone().contiguous()
    else:
        encoder_meta = {"kind": "pretrained", "name": stage.text_encoder_name}
    metadata = {
        "format": FORMAT,
        "stage_config": json.dumps(dataclasses.asdict(stage)),
        "text_encoder": json.dumps(encoder_meta),
        "step": "" if step is None else str(step),
        "weights": weights,
        **(extra_metadata or {}),
    }
    tmp = _atomic_target(path)
    save_file(tensors, str(tmp), metadata=metadata)
    # safetensors writes owner-only files; a checkpoint is meant to be shared like any other file.
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def is_tiny_encoder_name(name: str) -> bool:
    return name in TINY_TEXT_ENCODER_NAMES or name.startswith("tiny-t5")


def read_metadata(path: str | Path) -> dict[str, str]:
    """The checkpoint's metadata without loading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path}: not an imagen_core checkpoint (format={metadata.get('format')!r}, want {FORMAT!r})")
    return metadata


def read_stage_config(path: str | Path) -> StageConfig:
    return StageConfig.from_dict(json.loads(read_metadata(path)["stage_config"]))


def load_checkpoint(
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    load_text_encoder: bool = True,
    text_encoder_cache_dir: str | Path | None = None,
    text_encoder: str | Path | None = None,
) -> LoadedStage:
    """Rebuild the U-Net from the checkpoint's own config and load its weights (and its text encoder).

    ``text_encoder``: a hub id or local T5 folder to load instead of the one the checkpoint names (a converted
    DeepFloyd IF stage names google/t5-v1_1-xxl; a machine without a hub points at its own copy).
    """
    from safetensors.torch import load_file

    from imagen_core.unet import build_unet

    path = Path(path)
    metadata = read_metadata(path)
    stage = StageConfig.from_dict(json.loads(metadata["stage_config"]))
    tensors = load_file(str(path))
    unet = build_unet(stage.unet)
    unet_state = {k.removeprefix("unet."): v for k, v in tensors.items() if k.startswith("unet.")}
    missing, unexpected = unet.load_state_dict(unet_state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the config's U-Net: missing {missing}, unexpected {unexpected}")
    unet.to(device).eval()
    override = text_encoder
    text_encoder = None
    if load_text_encoder:
        encoder_meta = json.loads(metadata.get("text_encoder", "{}"))
        if override is not None:
            encoder_meta = {"kind": "pretrained", "name": str(override)}
        if encoder_meta.get("kind") == "tiny":
            state = {k.removeprefix("text_encoder."): v for k, v in tensors.items() if k.startswith("text_encoder.")}
            text_encoder = TextEncoder.tiny(
                state_dict=state,
                max_length=encoder_meta.get("max_length", stage.max_text_len),
                cache_dir=text_encoder_cache_dir,
            )
        else:
            text_encoder = TextEncoder.from_pretrained(
                encoder_meta.get("name", stage.text_encoder_name),
                max_length=stage.max_text_len,
                cache_dir=text_encoder_cache_dir,
                padding=stage.text_padding,
                lowercase=stage.text_lowercase,
            )
        text_encoder.to(device)
    return LoadedStage(unet=unet, stage=stage, text_encoder=text_encoder, metadata=metadata)


def save_training_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write the resumable state (plain dicts, tensors, ints, strings) with ``torch.save``, atomically."""
    path = Path(path)
    tmp = _atomic_target(path)
    torch.save(state, tmp)
    tmp.replace(path)
    return path


def load_training_state(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no training state at {path}")
    return torch.load(path, map_location="cpu", weights_only=False)
