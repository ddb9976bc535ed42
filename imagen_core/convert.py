"""DeepFloyd IF stages from diffusers into ordinary imagen_core checkpoints.

    python -m imagen_core.convert --from-diffusers DIR --out X.safetensors [--text-encoder T5] [--lowres-size 64]

DIR is a local diffusers IF pipeline folder (``unet/`` and ``scheduler/`` inside) or its ``unet`` folder. The U-Net of
IF-I and IF-II is diffusers' ``UNet2DConditionModel`` with ResnetDownsampleBlock2D / SimpleCrossAttnDownBlock2D blocks:
an Improved-DDPM U-Net (BigGAN up/down residual blocks, scale-shift norm) with GELU, the T5 sequence projected from
4096 wide and its keys/values joined to self-attention's (AttnAddedKVProcessor, text GroupNormed), the raw T5
sequence attention-pooled into the time embedding (TextTimeEmbedding), 6 output channels (ε and the learned variance
range) and, for stage II, the noise-augmentation level embedded like a timestep (class_embed_type="timestep").
Each of those is an explicit option of ``UNetConfig``; ``unet_config_from_diffusers`` sets them from config.json and
``unet_state_dict_from_diffusers`` renames (and fuses k/v) the weights. Nothing here imports diffusers.

The contract (tests/imagen_core/test_convert.py): with time = t / num_train_timesteps, the loaded U-Net equals
diffusers' within 1e-4 in fp32. The weights are the user's own download, under the DeepFloyd IF licence.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from imagen_core.config import DiffusionConfig, SamplerConfig, StageConfig, TrainingConfig, UNetConfig

DOWN_BLOCKS = {"ResnetDownsampleBlock2D": False, "SimpleCrossAttnDownBlock2D": True}
UP_BLOCKS = {"ResnetUpsampleBlock2D": False, "SimpleCrossAttnUpBlock2D": True}
# Options of UNet2DConditionModel that IF leaves at these values and imagen_core does not express otherwise.
REQUIRED = {
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "time_embedding_type": "positional",
    "class_embeddings_concat": False,
    "dual_cross_attention": False,
    "use_linear_projection": False,
    "only_cross_attention": False,
    "mid_block_only_cross_attention": None,
    "center_input_sample": False,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "time_cond_proj_dim": None,
    "timestep_post_act": None,
    "norm_eps": 1e-5,
}
# IFPipeline / IFSuperResolutionPipeline defaults (diffusers 0.42): steps, guidance, SR noise level 250 / 1000.
IF_STAGE_I_SAMPLING = {"steps": 100, "cond_scale": 7.0}
IF_STAGE_II_SAMPLING = {"steps": 50, "cond_scale": 4.0, "lowres_noise_level": 0.25}
IF_MAX_TEXT_LEN = 77
IF_TEXT_ENCODER = "google/t5-v1_1-xxl"


class ConversionError(ValueError):
    """The diffusers model uses something imagen_core's U-Net does not express."""


def _unsupported(name: str, value: Any, want: Any) -> ConversionError:
    return ConversionError(f"diffusers config {name}={value!r} is not supported (imagen_core expresses {want!r})")


def unet_config_from_diffusers(config: dict[str, Any], *, num_train_timesteps: int = 1000) -> UNetConfig:
    """The ``UNetConfig`` equal to an IF-style ``UNet2DConditionModel`` config.json (a dict)."""
    for name, want in REQUIRED.items():
        value = config.get(name, want)
        if isinstance(value, list) and len(set(map(repr, value))) == 1:
            value = value[0]  # a per-level list with one value for every level
        if value != want and not (name == "norm_eps" and abs(value - want) < 1e-12):
            raise _unsupported(name, config[name], want)
    down, up = list(config["down_block_types"]), list(config["up_block_types"])
    for block in down:
        if block not in DOWN_BLOCKS:
            raise _unsupported("down_block_types", block, sorted(DOWN_BLOCKS))
    for block in up:
        if block not in UP_BLOCKS:
            raise _unsupported("up_block_types", block, sorted(UP_BLOCKS))
    if [DOWN_BLOCKS[b] for b in down] != [UP_BLOCKS[b] for b in reversed(up)]:
        raise ConversionError("up_block_types must mirror down_block_types (attention at the same levels)")
    if config.get("mid_block_type", "UNetMidBlock2DSimpleCrossAttn") != "UNetMidBlock2DSimpleCrossAttn":
        raise _unsupported("mid_block_type", config.get("mid_block_type"), "UNetMidBlock2DSimpleCrossAttn")
    head_dim = config.get("attention_head_dim", 8)
    if isinstance(head_dim, list) and len(set(head_dim)) == 1:
        head_dim = head_dim[0]
    if not isinstance(head_dim, int) or config.get("num_attention_heads") is not None:
        raise _unsupported("attention_head_dim", head_dim, "one int for every level")
    if config.get("encoder_hid_dim_type") not in (None, "text_proj"):
        raise _unsupported("encoder_hid_dim_type", config.get("encoder_hid_dim_type"), "text_proj")
    if config.get("addition_embed_type") not in (None, "text"):
        raise _unsupported("addition_embed_type", config.get("addition_embed_type"), "text")
    if config.get("class_embed_type") not in (None, "timestep"):
        raise _unsupported("class_embed_type", config.get("class_embed_type"), "timestep")
    norm = config.get("cross_attention_norm")
    if norm not in (None, "group_norm"):
        raise _unsupported("cross_attention_norm", norm, "group_norm or None")
    act = config.get("act_fn", "silu")
    if act not in ("silu", "gelu"):
        raise _unsupported("act_fn", act, "silu or gelu")
    time_act = config.get("time_embedding_act_fn")
    if time_act not in (None, act):
        raise _unsupported("time_embedding_act_fn", time_act, f"None or act_fn ({act})")
    resnet_shift = config.get("resnet_time_scale_shift", "default")
    if resnet_shift not in ("default", "scale_shift"):
        raise _unsupported("resnet_time_scale_shift", resnet_shift, "default or scale_shift")

    channels = list(config["block_out_channels"])
    dim = channels[0]
    if any(c % dim for c in channels):
        raise ConversionError(f"block_out_channels {channels} are not multiples of the first")
    sample_size = config["sample_size"]
    lowres = config.get("class_embed_type") == "timestep"
    in_channels = config["in_channels"] // (2 if lowres else 1)
    cross_dim = config.get("cross_attention_dim", 1280)
    if not isinstance(cross_dim, int):
        raise _unsupported("cross_attention_dim", cross_dim, "one int")
    encoder_hid_dim = config.get("encoder_hid_dim")
    layers = config.get("layers_per_block", 2)
    cond_dim = config.get("time_embedding_dim") or 4 * dim
    return UNetConfig(
        kind="base",
        image_size=sample_size,
        in_channels=in_channels,
        out_channels=config.get("out_channels", 4),
        dim=dim,
        channel_mults=tuple(c // dim for c in channels),
        num_res_blocks=tuple(layers) if isinstance(layers, list | tuple) else layers,
        attn_resolutions=tuple(sample_size // 2**i for i, b in enumerate(down) if DOWN_BLOCKS[b]),
        head_dim=head_dim,
        text_embed_dim=encoder_hid_dim if encoder_hid_dim is not None else cross_dim,
        cond_dim=cond_dim,
        text_proj_dim=cross_dim if encoder_hid_dim is not None else None,
        text_proj_norm=False,
        use_text_attn_pool=config.get("addition_embed_type") == "text",
        text_pool_style="deepfloyd",
        text_pool_heads=config.get("addition_embed_type_num_heads", 64),
        lowres_cond=lowres,
        skip_scale=1.0 / config.get("resnet_out_scale_factor", 1.0),
        skip_scale_at="residual",
        mid_residual_scale=1.0 / config.get("mid_block_scale_factor", 1.0),
        mid_attn=True,
        skip_mode="concat",
        resblock_updown=True,
        use_scale_shift_norm=resnet_shift == "scale_shift",
        use_mid_block=True,
        norm_groups=config.get("norm_num_groups", 32),
        dropout=config.get("dropout", 0.0),
        time_embedding="sinusoidal",
        time_scale=float(num_train_timesteps),
        activation=act,
        cond_act_in_blocks=not config.get("resnet_skip_time_act", False),
        cond_act_after_sum=time_act is not None,
        text_norm="group" if norm == "group_norm" else "none",
        text_norm_groups=32,
    )


_RESNET = {"norm1": "norm1", "conv1": "conv1", "time_emb_proj": "cond_proj", "norm2": "norm2", "conv2": "conv2"}
_RESNET["conv_shortcut"] = "skip"
_ATTENTION = {"group_norm": "norm", "to_q": "to_q", "norm_cross": "text_norm", "to_out.0": "to_out"}
# Fused projections: (target, position, parts) — imagen_core keeps k and v in one Linear.
_FUSED = {"to_k": ("to_kv", 0), "to_v": ("to_kv", 1), "add_k_proj": ("text_to_kv", 0), "add_v_proj": ("text_to_kv", 1)}
_TOP = {
    "conv_in": "input_conv",
    "time_embedding.linear_1": "time_embed.mlp.0",
    "time_embedding.linear_2": "time_embed.mlp.2",
    "class_embedding.linear_1": "lowres_noise_embed.mlp.0",
    "class_embedding.linear_2": "lowres_noise_embed.mlp.2",
    "encoder_hid_proj": "text_proj.1",
    "add_embedding.norm1": "text_pool.norm",
    "add_embedding.pool.q_proj": "text_pool.to_q",
    "add_embedding.proj": "text_pool.to_out.0",
    "add_embedding.norm2": "text_pool.to_out.1",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_POOL_FUSED = {"add_embedding.pool.k_proj": ("text_pool.to_kv", 0), "add_embedding.pool.v_proj": ("text_pool.to_kv", 1)}


def _inner(prefix: str, rest: str, table: dict[str, str], fused: dict[str, tuple[str, int]] | None):
    module, _, param = rest.rpartition(".")
    if module in table:
        return f"{prefix}.{table[module]}.{param}", None
    if fused and module in fused:
        target, position = fused[module]
        return f"{prefix}.{target}.{param}", position
    raise ConversionError(f"unexpected diffusers weight {prefix}/{rest}")


def _map_key(key: str) -> tuple[str, int | None]:
    """diffusers state-dict key -> (imagen_core key, position in a fused k/v tensor or None)."""
    if key == "add_embedding.pool.positional_embedding":
        return "text_pool.pos_embed", None
    module, _, param = key.rpartition(".")
    if module in _TOP:
        return f"{_TOP[module]}.{param}", None
    if module in _POOL_FUSED:
        target, position = _POOL_FUSED[module]
        return f"{target}.{param}", position
    patterns = [
        (r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", lambda m: (f"encoder.{m[1]}.{m[2]}.res", m[3], _RESNET, None)),
        (
            r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)",
            lambda m: (f"encoder.{m[1]}.{m[2]}.attn", m[3], _ATTENTION, _FUSED),
        ),
        (r"down_blocks\.(\d+)\.downsamplers\.0\.(.+)", lambda m: (f"downsamplers.{m[1]}", m[2], _RESNET, None)),
        (r"mid_block\.resnets\.0\.(.+)", lambda m: ("mid.res", m[1], _RESNET, None)),
        (r"mid_block\.attentions\.0\.(.+)", lambda m: ("mid.attn", m[1], _ATTENTION, _FUSED)),
        (r"mid_block\.resnets\.1\.(.+)", lambda m: ("mid_out", m[1], _RESNET, None)),
        (r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", lambda m: (f"decoder.{m[1]}.{m[2]}.res", m[3], _RESNET, None)),
        (
            r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)",
            lambda m: (f"decoder.{m[1]}.{m[2]}.attn", m[3], _ATTENTION, _FUSED),
        ),
        (r"up_blocks\.(\d+)\.upsamplers\.0\.(.+)", lambda m: (f"upsamplers.{m[1]}", m[2], _RESNET, None)),
    ]
    for pattern, build in patterns:
        match = re.fullmatch(pattern, key)
        if match:
            prefix, rest, table, fused = build(match)
            return _inner(prefix, rest, table, fused)
    raise ConversionError(f"unexpected diffusers weight {key}")


def unet_state_dict_from_diffusers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a diffusers IF U-Net's weights to imagen_core's, concatenating k and v projections (k first)."""
    out: dict[str, Tensor] = {}
    parts: dict[str, dict[int, Tensor]] = {}
    for key, value in state.items():
        target, position = _map_key(key)
        if position is None:
            out[target] = value
        else:
            parts.setdefault(target, {})[position] = value
    for target, pieces in parts.items():
        if sorted(pieces) != [0, 1]:
            raise ConversionError(f"{target}: found only part(s) {sorted(pieces)} of a fused k/v projection")
        out[target] = torch.cat([pieces[0], pieces[1]], dim=0)
    return out


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def read_diffusers_weights(folder: Path) -> dict[str, Tensor]:
    """A diffusers model folder's weights: a safetensors file (fp32 preferred, else fp16), a sharded index, or .bin."""
    from safetensors.torch import load_file

    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"):
        if (folder / name).exists():
            return {k: v.float() for k, v in load_file(str(folder / name)).items()}
    for name in (
        "diffusion_pytorch_model.safetensors.index.json",
        "diffusion_pytorch_model.fp16.safetensors.index.json",
    ):
        if (folder / name).exists():
            shards = sorted(set(_read_json(folder / name)["weight_map"].values()))
            state: dict[str, Tensor] = {}
            for shard in shards:
                state.update({k: v.float() for k, v in load_file(str(folder / shard)).items()})
            return state
    for name in ("diffusion_pytorch_model.bin", "diffusion_pytorch_model.fp16.bin"):
        if (folder / name).exists():
            return {k: v.float() for k, v in torch.load(folder / name, map_location="cpu", weights_only=True).items()}
    raise FileNotFoundError(f"no diffusion_pytorch_model weights in {folder}")


def _locate(directory: Path) -> tuple[Path, Path | None]:
    """(unet folder, scheduler_config.json or None) for a pipeline folder or a unet folder."""
    if (directory / "unet" / "config.json").exists():
        scheduler = directory / "scheduler" / "scheduler_config.json"
        return directory / "unet", scheduler if scheduler.exists() else None
    if (directory / "config.json").exists():
        scheduler = directory.parent / "scheduler" / "scheduler_config.json"
        return directory, scheduler if scheduler.exists() else None
    raise FileNotFoundError(f"{directory} is neither a diffusers pipeline folder (unet/config.json) nor a unet folder")


def sampler_from_scheduler(scheduler: dict[str, Any], *, lowres: bool) -> SamplerConfig:
    """IF's DDPM sampling as a SamplerConfig: ancestral steps, learned variance, its thresholding."""
    if scheduler.get("prediction_type", "epsilon") != "epsilon":
        raise _unsupported("prediction_type", scheduler.get("prediction_type"), "epsilon")
    if scheduler.get("thresholding"):
        thresholding = {
            "thresholding": "dynamic",
            "dynamic_threshold_percentile": scheduler.get("dynamic_thresholding_ratio", 0.995),
            "dynamic_threshold_max": scheduler.get("sample_max_value", 1.0),
        }
    elif scheduler.get("clip_sample", True) and scheduler.get("clip_sample_range", 1.0) == 1.0:
        thresholding = {"thresholding": "static"}
    else:
        thresholding = {"thresholding": "none"}
    defaults = IF_STAGE_II_SAMPLING if lowres else IF_STAGE_I_SAMPLING
    return SamplerConfig(sampler="ancestral", **thresholding, **defaults)


def stage_config_from_diffusers(
    unet_config: dict[str, Any],
    scheduler: dict[str, Any] | None = None,
    *,
    text_encoder_name: str = IF_TEXT_ENCODER,
    lowres_image_size: int | None = None,
) -> StageConfig:
    """The StageConfig of an IF stage: its U-Net, the discrete cosine schedule with learned variance, IF's sampling."""
    scheduler = scheduler or {
        "beta_schedule": "squaredcos_cap_v2",
        "num_train_timesteps": 1000,
        "variance_type": "learned_range",
        "thresholding": True,
        "dynamic_thresholding_ratio": 0.95,
        "sample_max_value": 1.5,
    }
    if scheduler.get("beta_schedule", "squaredcos_cap_v2") != "squaredcos_cap_v2":
        raise _unsupported("beta_schedule", scheduler.get("beta_schedule"), "squaredcos_cap_v2")
    steps = scheduler.get("num_train_timesteps", 1000)
    unet = unet_config_from_diffusers(unet_config, num_train_timesteps=steps)
    variance = scheduler.get("variance_type", "fixed_small")
    if variance not in ("learned_range", "fixed_small"):
        raise _unsupported("variance_type", variance, "learned_range or fixed_small")
    if unet.lowres_cond and lowres_image_size is None:
        # IF-II: 64 → 256.
        lowres_image_size = unet.image_size // 4
    return StageConfig(
        unet=unet,
        diffusion=DiffusionConfig(
            schedule="squaredcos_cap_v2",
            num_train_timesteps=steps,
            variance="learned_range" if variance == "learned_range" else "fixed",
        ),
        sampler=sampler_from_scheduler(scheduler, lowres=unet.lowres_cond),
        training=TrainingConfig(optimizer="adam"),
        image_size=unet.image_size,
        lowres_image_size=lowres_image_size if unet.lowres_cond else None,
        text_encoder_name=text_encoder_name,
        text_embed_dim=unet.text_embed_dim,
        max_text_len=IF_MAX_TEXT_LEN,
        text_padding="max_length",
        null_text="empty_prompt",
        text_lowercase=True,
        lowres_align_corners=True,
        lowres_noise_after_start=True,
    )


def convert_from_diffusers(
    directory: str | Path,
    out: str | Path,
    *,
    text_encoder_name: str = IF_TEXT_ENCODER,
    lowres_image_size: int | None = None,
) -> Path:
    """Convert a local diffusers IF pipeline (or unet) folder to one imagen_core checkpoint at ``out``."""
    from imagen_core.checkpoints import save_checkpoint
    from imagen_core.unet import build_unet

    unet_dir, scheduler_path = _locate(Path(directory))
    unet_config = _read_json(unet_dir / "config.json")
    scheduler = _read_json(scheduler_path) if scheduler_path is not None else None
    stage = stage_config_from_diffusers(
        unet_config, scheduler, text_encoder_name=text_encoder_name, lowres_image_size=lowres_image_size
    )
    state = unet_state_dict_from_diffusers(read_diffusers_weights(unet_dir))
    unet = build_unet(stage.unet)
    missing, unexpected = unet.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ConversionError(f"converted weights do not fit: missing {missing}, unexpected {unexpected}")
    source = {"from": "diffusers", "path": str(Path(directory).resolve()), "class": unet_config.get("_class_name")}
    return save_checkpoint(
        out, unet=unet, stage=stage, weights="converted", extra_metadata={"source": json.dumps(source)}
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m imagen_core.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-diffusers", required=True, metavar="DIR", help="IF pipeline folder or its unet folder")
    parser.add_argument("--out", required=True, metavar="X.safetensors")
    parser.add_argument(
        "--text-encoder", default=IF_TEXT_ENCODER, help="T5 the checkpoint names: a hub id or a local folder"
    )
    parser.add_argument(
        "--lowres-size",
        type=int,
        default=None,
        help="stage II: input image size (default: a quarter of its output, IF-II's 64 → 256)",
    )
    args = parser.parse_args(argv)
    path = convert_from_diffusers(
        args.from_diffusers, args.out, text_encoder_name=args.text_encoder, lowres_image_size=args.lowres_size
    )
    print(path)


if __name__ == "__main__":
    main()
