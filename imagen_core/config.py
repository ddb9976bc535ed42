"""Frozen configuration dataclasses for imagen_core and the paper's presets.

Follows Saharia et al. 2022, "Photorealistic Text-to-Image Diffusion Models with Deep Language Understanding"
(arXiv 2205.11487): Sec. 2 and Appendices B (architectures), E (guidance, thresholding) and F (training).
Every point the paper leaves open is a named option here, with the choice it implies written beside it.

This module is pure Python: no torch import, so a web process may read configs from a checkpoint's metadata.
A checkpoint carries `dataclasses.asdict(config)`; `UNetConfig.from_dict` etc. rebuild it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

UNetKind = Literal["base", "efficient", "standard"]
SkipMode = Literal["concat", "add"]
SkipScaleAt = Literal["unet_skip", "residual", "both", "none"]
UpsampleMode = Literal["nearest_conv", "transposed", "pixel_shuffle"]
DownsampleMode = Literal["conv", "avgpool"]
TimeEmbedding = Literal["sinusoidal", "fourier"]
Placement = Literal["block", "res_block"]
Schedule = Literal["cosine", "linear", "squaredcos_cap_v2"]
Activation = Literal["silu", "gelu"]
TextNorm = Literal["layer", "group", "none"]
TextPoolStyle = Literal["imagen", "deepfloyd"]
Variance = Literal["fixed", "learned_range"]
LrSchedule = Literal["constant", "cosine"]
TextPadding = Literal["longest", "max_length"]
NullText = Literal["zeros", "empty_prompt"]
PredObjective = Literal["eps", "v"]
SamplerName = Literal["ddim", "ancestral", "dpmpp"]
Thresholding = Literal["dynamic", "static", "none"]
Optimizer = Literal["adam", "adafactor"]

# T5-XXL's hidden size (Raffel et al. 2020), the paper's text encoder (Sec. 2.1).
T5_XXL_DIM = 4096
# The tiny offline T5 of DESIGN.md §6 (d_model=32).
TINY_T5_DIM = 32


def _check(condition: bool, where: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{where}: {message}")


def _from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a dataclass from `dataclasses.asdict` output, turning lists back into tuples."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    _check(not unknown, cls.__name__, f"unknown field(s) {unknown}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class UNetConfig:
    """One U-Net of the cascade. `build_unet(config)` in unet.py turns it into a module.

    Layouts (`kind`):
    - "base": the paper's 64×64 model (App. B.1): an Improved-DDPM U-Net with BigGAN-style residual blocks,
      scale-shift norm and attention at `attn_resolutions`, the text sequence concatenated to the keys and values
      of self-attention.
    - "standard": the same Improved-DDPM/Palette layout used as the comparison baseline for the Efficient U-Net
      (full-resolution convolutions first, equal residual blocks per level, attention at 16 and 8).
    - "efficient": the Efficient U-Net (App. B.1, Fig. A.28–A.31): a DBlock downsamples BEFORE its convolutions,
      a UBlock upsamples AFTER them, so the first and last blocks already run at half resolution; more residual
      blocks at low resolution; attention only at the lowest level.
    """

    kind: UNetKind = "base"
    # Size the network is built for. Attention levels are chosen from it; the network itself is fully
    # convolutional elsewhere, so the 256→1024 model can train on smaller crops (App. F.2).
    image_size: int = 64
    in_channels: int = 3
    out_channels: int = 3
    # Width of the first level; level i has dim * channel_mults[i] channels.
    dim: int = 512
    channel_mults: tuple[int, ...] = (1, 2, 3, 4)
    # Residual blocks per level (one int for all levels, or one per level). In the base/standard layouts the
    # decoder has num_res_blocks + 1 blocks per level, as in Improved DDPM.
    num_res_blocks: int | tuple[int, ...] = 3
    # Resolutions (in pixels, relative to image_size) at which attention layers are placed.
    # Base/standard: every residual block at such a resolution is followed by attention.
    # Efficient: see efficient_attn_placement; the paper puts attention only at the lowest level, which is what an
    # empty tuple means.
    attn_resolutions: tuple[int, ...] = (32, 16, 8)
    # Efficient layout only: one attention layer at the end of each DBlock/UBlock (Fig. A.29/A.30, "block"), or
    # one after every residual block of the level ("res_block", as the base layout does).
    efficient_attn_placement: Placement = "block"
    # Where the conditioning vector enters. "res_block": scale-shift norm inside every residual block (Improved
    # DDPM; the base model). "block" (efficient only): one FiLM ("CombineEmbs", Fig. A.29/A.30) at the start of each
    # DBlock/UBlock, the residual blocks themselves unconditioned (Fig. A.28).
    cond_placement: Placement = "res_block"
    num_heads: int = 8
    # If set, the number of heads is channels // head_dim instead of num_heads.
    head_dim: int | None = None
    # Width of the text encoder output (T5-XXL: 4096). 0 means an unconditional network.
    text_embed_dim: int = T5_XXL_DIM
    # Width of the conditioning vector (timestep + pooled text + low-res noise level). None: 4 * dim.
    cond_dim: int | None = None
    # None: every attention and pooling layer projects the T5 embeddings itself (after its own LayerNorm).
    # An int: one shared LayerNorm + Linear first maps the text to this width (as lucidrains/imagen-pytorch and
    # NeMo do), and each layer then normalises and projects that. The paper does not say which.
    text_proj_dim: int | None = None
    # Self-attention over image positions. False: attention layers attend to the text only (the paper's
    # 256→1024 model drops self-attention and keeps text cross-attention, App. F.2).
    use_self_attn: bool = True
    # Concatenate the (LayerNormed, projected) text sequence to the keys and values of each attention layer.
    use_text_cross_attn: bool = True
    # Attention-pool the text sequence and add it to the timestep embedding (App. B.1).
    use_text_attn_pool: bool = True
    # Super-resolution model: the upsampled low-res image is concatenated to x_t along channels, and the noise
    # conditioning augmentation level is embedded and added to the conditioning vector (Sec. 2.5).
    lowres_cond: bool = False
    # Where the paper's 1/√2 skip scaling goes ("ambiguous", DESIGN.md §5):
    # "unet_skip" scales the encoder→decoder skip tensors (as lucidrains/imagen-pytorch does);
    # "residual" scales every residual sum, (x + h) * skip_scale (as NCSN++'s skip_rescale does);
    # "both" does both; "none" disables it.
    skip_scale: float = 2**-0.5
    skip_scale_at: SkipScaleAt = "unet_skip"
    # How encoder skips enter the decoder: concatenated along channels (Improved DDPM, paper) or added.
    skip_mode: SkipMode = "concat"
    # Upsampling op: nearest-neighbour ×2 then 3×3 conv (Improved DDPM), a stride-2 transposed conv, or a 1×1
    # conv to 4C followed by pixel shuffle.
    upsample_mode: UpsampleMode = "nearest_conv"
    # Downsampling op: stride-2 3×3 conv (the paper's "stride 2") or 2×2 average pooling.
    downsample_mode: DownsampleMode = "conv"
    # BigGAN-style up/downsampling inside residual blocks (Improved DDPM's resblock_updown); base/standard only.
    resblock_updown: bool = False
    # Scale-shift norm: GroupNorm(h) * (1 + scale) + shift with (scale, shift) from the conditioning vector.
    # False adds the projected conditioning to h instead.
    use_scale_shift_norm: bool = True
    # Base/standard: residual block + attention + residual block between encoder and decoder.
    # Efficient: the paper's Efficient U-Net has no separate middle block.
    use_mid_block: bool = True
    # GroupNorm groups; a layer with C channels uses gcd(norm_groups, C) groups so small widths stay valid.
    norm_groups: int = 32
    dropout: float = 0.0
    time_embedding: TimeEmbedding = "sinusoidal"
    # Continuous time t ∈ [0, 1] is multiplied by this before the sinusoidal features, so the frequencies match a
    # 1000-step discrete model.
    time_scale: float = 1000.0
    # ---- Options that let the same layout express DeepFloyd IF (diffusers' IF UNet2DConditionModel) ----
    # Nonlinearity of residual blocks, the conditioning MLPs and the output head (IF: GELU).
    activation: Activation = "silu"
    # True: each residual block / FiLM applies the activation to the conditioning vector before its projection
    # (Improved DDPM; computed once per forward, not once per block). False: blocks project it as it is
    # (diffusers' resnet_skip_time_act).
    cond_act_in_blocks: bool = True
    # Apply the activation once to the summed conditioning vector (diffusers' time_embedding_act_fn).
    cond_act_after_sum: bool = False
    # Residual scale of the middle block's residual blocks; None: the same as every other block
    # (skip_scale when skip_scale_at is "residual" or "both"). diffusers' mid_block_scale_factor is its inverse.
    mid_residual_scale: float | None = None
    # Attention in the middle block; None: when the lowest level has attention (IF: always).
    mid_attn: bool | None = None
    # Normalisation of the text tokens before each attention layer's key/value projection: LayerNorm over the width
    # (the paper: "LayerNorm on text embeddings"), GroupNorm over [width, tokens] (DeepFloyd IF's norm_encoder,
    # diffusers' cross_attention_norm="group_norm"), or none.
    text_norm: TextNorm = "layer"
    # Groups of text_norm="group" (diffusers' cross_attention_norm_num_groups, 32 whatever norm_num_groups is).
    text_norm_groups: int = 32
    # LayerNorm before the shared text projection (text_proj_dim); IF's encoder_hid_proj is a bare Linear.
    text_proj_norm: bool = True
    # Attention pooling of the text: "imagen" pools the (projected) text straight into cond_dim with an output
    # projection; "deepfloyd" pools the raw T5 sequence at its own width (learned positional embedding on the
    # query token, text_pool_heads heads), then Linear to cond_dim and LayerNorm (IF's TextTimeEmbedding).
    text_pool_style: TextPoolStyle = "imagen"
    # Heads of the attention pooling; None: heads_for(cond_dim).
    text_pool_heads: int | None = None
    # Run the convolutions on channels-last (NHWC) activations: the input is converted once, every layer keeps the
    # format, and the output comes back contiguous. Faster convolutions on CPUs (oneDNN) and tensor cores; the
    # function is the same.
    channels_last: bool = False
    # With channels_last, run the residual blocks' wide 3×3 convolutions (at least 128 channels in and out, 8×8 to
    # 64×64) as Winograd F(2×2, 3×3) on CPU in fp32: 2.25× fewer multiplies in the forward and both gradients, the
    # same function (rounding differs by about 1e-6 relative). See imagen_core.winograd. No effect on GPUs or in bf16.
    cpu_winograd: bool = False
    # Attention layers without self-attention get one learned null key/value (so a fully masked text still has
    # something to attend to).
    null_kv_without_self_attn: bool = True

    def __post_init__(self) -> None:
        where = f"UNetConfig(kind={self.kind!r})"
        _check(self.kind in ("base", "efficient", "standard"), where, f"unknown kind {self.kind!r}")
        _check(self.dim > 0 and self.image_size > 0, where, "dim and image_size must be positive")
        _check(len(self.channel_mults) > 0, where, "channel_mults must not be empty")
        n_down = len(self.channel_mults) if self.kind == "efficient" else len(self.channel_mults) - 1
        _check(
            self.image_size % (2**n_down) == 0,
            where,
            f"image_size={self.image_size} is not divisible by 2**{n_down} (one halving per level)",
        )
        if isinstance(self.num_res_blocks, tuple):
            _check(
                len(self.num_res_blocks) == len(self.channel_mults),
                where,
                f"num_res_blocks has {len(self.num_res_blocks)} entries but channel_mults has "
                f"{len(self.channel_mults)}",
            )
        _check(all(n >= 1 for n in self.res_blocks_per_level), where, "every level needs at least one res block")
        _check(self.skip_mode in ("concat", "add"), where, f"unknown skip_mode {self.skip_mode!r}")
        _check(
            self.skip_scale_at in ("unet_skip", "residual", "both", "none"),
            where,
            f"unknown skip_scale_at {self.skip_scale_at!r}",
        )
        _check(
            self.upsample_mode in ("nearest_conv", "transposed", "pixel_shuffle"),
            where,
            f"unknown upsample_mode {self.upsample_mode!r}",
        )
        _check(self.downsample_mode in ("conv", "avgpool"), where, f"unknown downsample_mode {self.downsample_mode!r}")
        _check(
            self.time_embedding in ("sinusoidal", "fourier"), where, f"unknown time_embedding {self.time_embedding!r}"
        )
        _check(self.text_embed_dim >= 0, where, "text_embed_dim must be >= 0 (0: unconditional)")
        _check(
            self.efficient_attn_placement in ("block", "res_block"),
            where,
            f"unknown efficient_attn_placement {self.efficient_attn_placement!r}",
        )
        _check(self.cond_placement in ("block", "res_block"), where, f"unknown cond_placement {self.cond_placement!r}")
        _check(
            self.kind == "efficient" or self.cond_placement == "res_block",
            where,
            'cond_placement="block" exists only in the efficient layout (DBlock/UBlock)',
        )
        _check(self.text_proj_dim is None or self.text_proj_dim > 0, where, "text_proj_dim must be None or > 0")
        _check(
            self.use_self_attn or (self.use_text_cross_attn and self.text_embed_dim > 0) or not self.attention_levels,
            where,
            "attention layers without self-attention need text cross-attention (use_text_cross_attn and "
            "text_embed_dim > 0), or no attn_resolutions",
        )
        _check(0.0 <= self.dropout < 1.0, where, "dropout must be in [0, 1)")
        _check(self.activation in ("silu", "gelu"), where, f"unknown activation {self.activation!r}")
        _check(self.text_norm in ("layer", "group", "none"), where, f"unknown text_norm {self.text_norm!r}")
        _check(
            self.text_pool_style in ("imagen", "deepfloyd"), where, f"unknown text_pool_style {self.text_pool_style!r}"
        )
        _check(self.text_pool_heads is None or self.text_pool_heads >= 1, where, "text_pool_heads must be >= 1")
        if self.head_dim is None:
            _check(self.num_heads >= 1, where, "num_heads must be >= 1")
        else:
            _check(self.head_dim >= 1, where, "head_dim must be >= 1")
        for resolution in self.attn_resolutions:
            _check(
                resolution in self.level_resolutions,
                where,
                f"attn_resolutions contains {resolution}, but the levels run at {self.level_resolutions}",
            )

    @property
    def res_blocks_per_level(self) -> tuple[int, ...]:
        if isinstance(self.num_res_blocks, int):
            return (self.num_res_blocks,) * len(self.channel_mults)
        return tuple(self.num_res_blocks)

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(self.dim * m for m in self.channel_mults)

    @property
    def level_resolutions(self) -> tuple[int, ...]:
        """Resolution at which each level's residual blocks run, for an input of image_size.

        Base/standard: level 0 runs at full resolution. Efficient: a DBlock halves first, so level 0 runs at half.
        """
        first = 1 if self.kind == "efficient" else 0
        return tuple(self.image_size // 2 ** (i + first) for i in range(len(self.channel_mults)))

    @property
    def attention_levels(self) -> tuple[bool, ...]:
        """Whether each level has attention layers."""
        if self.kind == "efficient" and not self.attn_resolutions:
            return tuple(i == len(self.channel_mults) - 1 for i in range(len(self.channel_mults)))
        return tuple(r in self.attn_resolutions for r in self.level_resolutions)

    @property
    def resolved_cond_dim(self) -> int:
        return self.cond_dim if self.cond_dim is not None else 4 * self.dim

    @property
    def text_width(self) -> int:
        """Width of the text tokens the attention and pooling layers see (0: no text)."""
        if self.text_embed_dim == 0:
            return 0
        return self.text_proj_dim if self.text_proj_dim is not None else self.text_embed_dim

    @property
    def has_mid_attn(self) -> bool:
        return self.attention_levels[-1] if self.mid_attn is None else self.mid_attn

    def heads_for(self, channels: int) -> int:
        if self.head_dim is not None:
            return max(1, channels // self.head_dim)
        return self.num_heads

    def group_count(self, channels: int) -> int:
        return math.gcd(self.norm_groups, channels)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class DiffusionConfig:
    """Continuous-time Gaussian diffusion (Sec. 2.2, App. A; Kingma et al. 2021 "Variational Diffusion Models")."""

    # Cosine log-SNR schedule for the 64×64 base and 64→256 models; linear (β 1e-4 → 0.02 over a 1000-step
    # equivalent) for 256→1024 (App. F). "squaredcos_cap_v2": the discrete 1000-step cosine schedule of Improved
    # DDPM as diffusers builds it (β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), 0.999)), which DeepFloyd IF was trained on;
    # time t then means discrete step t · num_train_timesteps.
    schedule: Schedule = "cosine"
    # Steps of a discrete schedule (squaredcos_cap_v2); times are multiples of 1 / num_train_timesteps.
    num_train_timesteps: int = 1000
    # "fixed": the network predicts ε (or v) only. "learned_range": it also predicts, in as many extra channels,
    # v ∈ [−1, 1] interpolating the log variance between the posterior's β̃ and β (Improved DDPM, Eq. 15), as IF
    # does; its out_channels are then twice the image channels. Training still uses the simple loss on ε (the
    # variance channels get no L_vlb gradient).
    variance: Variance = "fixed"
    # The paper trains ε-prediction; v-prediction (Salimans & Ho 2022) is an option.
    pred_objective: PredObjective = "eps"
    # Classifier-free guidance training: text embeddings zeroed with this probability (Sec. 2.3, App. F).
    cond_drop_prob: float = 0.1
    # Cosine schedule offset s of Nichol & Dhariwal 2021.
    cosine_s: float = 0.008
    linear_beta_start: float = 1e-4
    linear_beta_end: float = 0.02
    linear_num_steps: int = 1000
    # log-SNR is clipped to this range so t = 0 and t = 1 stay finite.
    log_snr_min: float = -20.0
    log_snr_max: float = 20.0
    # Per-pixel loss. The paper uses the simple L2 loss on ε.
    loss: Literal["l2", "l1"] = "l2"
    # Min-SNR loss weighting (Hang et al. 2023); None (off) as in the paper.
    min_snr_gamma: float | None = None

    def __post_init__(self) -> None:
        where = "DiffusionConfig"
        _check(self.schedule in ("cosine", "linear", "squaredcos_cap_v2"), where, f"unknown schedule {self.schedule!r}")
        _check(self.num_train_timesteps >= 2, where, "num_train_timesteps must be >= 2")
        _check(self.variance in ("fixed", "learned_range"), where, f"unknown variance {self.variance!r}")
        _check(self.pred_objective in ("eps", "v"), where, f"unknown pred_objective {self.pred_objective!r}")
        _check(0.0 <= self.cond_drop_prob <= 1.0, where, "cond_drop_prob must be in [0, 1]")
        _check(self.loss in ("l2", "l1"), where, f"unknown loss {self.loss!r}")
        _check(self.log_snr_min < self.log_snr_max, where, "log_snr_min must be below log_snr_max")

    @property
    def is_discrete(self) -> bool:
        return self.schedule == "squaredcos_cap_v2"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiffusionConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class SamplerConfig:
    """How to draw samples. The paper names ancestral and DDIM sampling but gives no step counts (App. E)."""

    sampler: SamplerName = "ddim"
    # Not given in the paper; 50 DDIM steps is common open practice.
    steps: int = 50
    # Guidance weight w in ε̃ = w·ε(z, c) + (1 − w)·ε(z). The paper's samples use w ≈ 5; COCO FID used 1.35 (base)
    # and 8.0 (SR).
    cond_scale: float = 5.0
    # Dynamic thresholding (Sec. 2.3): s = percentile(|x̂₀|, p); s = max(s, 1); clip to [−s, s]; divide by s.
    thresholding: Thresholding = "dynamic"
    dynamic_threshold_percentile: float = 0.995
    # Upper bound on the dynamic threshold s (diffusers' sample_max_value; IF: 1.5). None: unbounded, as the paper.
    dynamic_threshold_max: float | None = None
    # Noise conditioning augmentation level for SR stages at sampling time (Sec. 2.5: fixed, 0 to 0.3).
    lowres_noise_level: float = 0.2
    # DDIM η (0: deterministic DDIM; 1: DDPM-like ancestral noise).
    ddim_eta: float = 0.0
    # Ancestral sampler, for a network without learned variance: the step's log variance is
    # γ·log β + (1 − γ)·log β̃ (Improved DDPM, Eq. 15 with a fixed v). 0 is the posterior variance β̃ (DDPM's
    # σ² = β̃, the previous behaviour); 1 is β. A learned-range network supplies its own v per pixel.
    ancestral_gamma: float = 0.0

    def __post_init__(self) -> None:
        where = "SamplerConfig"
        _check(self.sampler in ("ddim", "ancestral", "dpmpp"), where, f"unknown sampler {self.sampler!r}")
        _check(self.steps >= 1, where, "steps must be >= 1")
        _check(self.thresholding in ("dynamic", "static", "none"), where, f"unknown thresholding {self.thresholding!r}")
        _check(
            0.5 < self.dynamic_threshold_percentile <= 1.0, where, "dynamic_threshold_percentile must be in (0.5, 1]"
        )
        _check(0.0 <= self.lowres_noise_level <= 1.0, where, "lowres_noise_level must be in [0, 1]")
        _check(0.0 <= self.ancestral_gamma <= 1.0, where, "ancestral_gamma must be in [0, 1]")
        _check(
            self.dynamic_threshold_max is None or self.dynamic_threshold_max >= 1.0,
            where,
            "dynamic_threshold_max must be None or >= 1",
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplerConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation of one stage (App. F): batch 2048, 2.5M steps, lr 1e-4 with 10k warmup steps."""

    # Base model: Adafactor; SR models: Adam (β 0.9, 0.999, ε 1e-8).
    optimizer: Optimizer = "adam"
    lr: float = 1e-4
    warmup_steps: int = 10_000
    batch_size: int = 2048
    num_steps: int = 2_500_000
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    # Not given in the paper: common practice.
    grad_clip_norm: float = 1.0
    ema_decay: float = 0.9999
    # After warmup: constant (the paper says nothing of decay) or cosine decay to lr_min_ratio · lr at num_steps.
    lr_schedule: LrSchedule = "constant"
    lr_min_ratio: float = 0.0

    def __post_init__(self) -> None:
        where = "TrainingConfig"
        _check(self.lr_schedule in ("constant", "cosine"), where, f"unknown lr_schedule {self.lr_schedule!r}")
        _check(0.0 <= self.lr_min_ratio <= 1.0, where, "lr_min_ratio must be in [0, 1]")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class StageConfig:
    """One stage of the cascade: its U-Net, diffusion process, sizes and text encoder."""

    unet: UNetConfig
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    image_size: int = 64
    # Size of the conditioning image for a super-resolution stage; None for the base stage.
    lowres_image_size: int | None = None
    # Training crop for the 256→1024 stage, which trains on 64→256 crops (App. F.2); None: full images.
    train_crop_size: int | None = None
    text_encoder_name: str = "google/t5-v1_1-xxl"
    text_embed_dim: int = T5_XXL_DIM
    max_text_len: int = 128
    # "longest": pad to the longest text, padding zeroed and masked (imagen_core). "max_length": pad every text to
    # max_text_len and keep T5's outputs at the padding positions, all attended (DeepFloyd IF: 77 tokens, no mask).
    text_padding: TextPadding = "longest"
    # The unconditional input of classifier-free guidance: zeroed embeddings (the paper, imagen_core's training)
    # or the encoding of the empty prompt (IF, which drops texts to "" in training).
    null_text: NullText = "zeros"
    # Lower-case and strip prompts before tokenizing (IF's pipelines do, when they do not clean captions).
    text_lowercase: bool = False
    # Super-resolution sampling: upsample the low-res image with align_corners=True (IF's stage II does) instead of
    # False, and draw its augmentation noise after the starting noise x_1 (IF's order) instead of before.
    lowres_align_corners: bool = False
    lowres_noise_after_start: bool = False

    def __post_init__(self) -> None:
        where = f"StageConfig(image_size={self.image_size})"
        _check(
            self.unet.lowres_cond == (self.lowres_image_size is not None),
            where,
            "unet.lowres_cond must be True exactly when lowres_image_size is set",
        )
        _check(
            self.unet.text_embed_dim in (0, self.text_embed_dim),
            where,
            f"unet.text_embed_dim={self.unet.text_embed_dim} does not match text_embed_dim={self.text_embed_dim}",
        )
        if self.lowres_image_size is not None:
            _check(self.lowres_image_size < self.image_size, where, "lowres_image_size must be below image_size")
        _check(self.text_padding in ("longest", "max_length"), where, f"unknown text_padding {self.text_padding!r}")
        _check(self.null_text in ("zeros", "empty_prompt"), where, f"unknown null_text {self.null_text!r}")
        image_channels = self.unet.in_channels
        want = image_channels * (2 if self.diffusion.variance == "learned_range" else 1)
        _check(
            self.unet.out_channels == want,
            where,
            f"unet.out_channels={self.unet.out_channels}, but variance={self.diffusion.variance!r} needs {want}",
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageConfig:
        data = dict(data)
        data["unet"] = UNetConfig.from_dict(data["unet"])
        for name, sub in (("diffusion", DiffusionConfig), ("sampler", SamplerConfig), ("training", TrainingConfig)):
            if name in data:
                data[name] = sub.from_dict(data[name])
        return _from_dict(cls, data)


@dataclass(frozen=True)
class CascadeConfig:
    """The cascade base → SR → SR; any prefix of it is a valid cascade."""

    stages: tuple[StageConfig, ...]

    def __post_init__(self) -> None:
        _check(len(self.stages) >= 1, "CascadeConfig", "needs at least one stage")
        _check(self.stages[0].lowres_image_size is None, "CascadeConfig", "the first stage must not be an SR stage")
        for i, (prev, stage) in enumerate(zip(self.stages, self.stages[1:], strict=False), start=1):
            _check(
                stage.lowres_image_size == prev.image_size,
                f"CascadeConfig.stages[{i}]",
                f"lowres_image_size={stage.lowres_image_size} does not match the previous stage's "
                f"image_size={prev.image_size}",
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CascadeConfig:
        return cls(stages=tuple(StageConfig.from_dict(s) for s in data["stages"]))


# ---- Paper presets (Saharia et al. 2022, App. B.1 architectures, App. F training) ----
#
# The paper gives the layouts and the total sizes (2B, 600M, 400M) but not the internal breakdown. Where the paper is
# explicit the preset follows it; choices marked "sizing" are ours. Measured (tests/imagen_core/test_unet.py builds
# each on the meta device): base 2.01B, 64→256 452.6M (paper: ~600M; see PAPER_SR_256), 256→1024 430M. The README's
# "Toy Imagen" section tabulates paper against ours with the reasons.

# 64×64 base model (App. B.1, F.1): width 512, channel multipliers [1, 2, 3, 4], 3 residual blocks per level,
# BigGAN-style blocks with scale-shift norm, attention at 32, 16, 8 with the text sequence concatenated to the keys
# and values, 64 channels per attention head (so 16/24/32 heads at the 1024/1536/2048-channel levels). "2B
# parameters", counted here without T5-XXL. cond_dim 2048 = 4 × width, as in Improved DDPM. No skip scaling: the
# paper asks for it in the Efficient U-Net only.
# Sizing: the T5 sequence is projected once to 512 wide (as lucidrains/imagen-pytorch's text_to_cond); projecting
# the 4096-wide T5 output separately in each of the 22 attention layers would add 270M (2.28B).
PAPER_BASE_64 = UNetConfig(
    kind="base",
    image_size=64,
    dim=512,
    channel_mults=(1, 2, 3, 4),
    num_res_blocks=3,
    attn_resolutions=(32, 16, 8),
    head_dim=64,
    text_embed_dim=T5_XXL_DIM,
    cond_dim=2048,
    text_proj_dim=512,
    skip_scale_at="none",
)

# 64→256 super-resolution model (App. B.1, Fig. A.28–A.31, F.2): Efficient U-Net, blocks of 128/256/512/1024
# channels with 2/4/8/8 residual blocks, conditioning combined once per block ("CombineEmbs"), and one
# self-attention layer (8 heads) with text cross-attention at the end of the 1024-channel DBlock and UBlock
# (Fig. A.29/A.30). Skip connections scaled by 1/√2 where scaling changes the function: every residual sum
# (x + h)/√2 (a scale on the concatenated U-Net skip would only be folded into the next layer's weights).
# Paper-faithful placement gives 452.6M parameters, not the paper's "about 600M": the figures do not show where the
# other ~150M are. PAPER_SR_256_600M reaches 629M by an attention layer after every residual block of that level.
PAPER_SR_256 = UNetConfig(
    kind="efficient",
    image_size=256,
    dim=128,
    channel_mults=(1, 2, 4, 8),
    num_res_blocks=(2, 4, 8, 8),
    attn_resolutions=(),
    efficient_attn_placement="block",
    cond_placement="block",
    num_heads=8,
    text_embed_dim=T5_XXL_DIM,
    cond_dim=512,
    lowres_cond=True,
    use_mid_block=False,
    skip_scale_at="residual",
)
# Sizing variant of PAPER_SR_256 with the paper's total (629M): attention after each of the 1024-channel block's
# residual blocks, keys and values from the full-width T5 sequence.
PAPER_SR_256_600M = dataclasses.replace(PAPER_SR_256, efficient_attn_placement="res_block")

# 256→1024 super-resolution model (App. B.1, F.2): the same Efficient U-Net without self-attention; text
# cross-attention kept in the 1024-channel block; trained on 64→256 crops. About 400M parameters.
# Sizing: its convolutions alone are ~415M, so the text cross-attention is one layer per DBlock/UBlock on a T5
# sequence projected to 512 wide.
PAPER_SR_1024 = UNetConfig(
    kind="efficient",
    image_size=1024,
    dim=128,
    channel_mults=(1, 2, 4, 8),
    num_res_blocks=(2, 4, 8, 8),
    attn_resolutions=(),
    efficient_attn_placement="block",
    cond_placement="block",
    num_heads=8,
    text_embed_dim=T5_XXL_DIM,
    text_proj_dim=512,
    cond_dim=512,
    lowres_cond=True,
    use_self_attn=False,
    use_mid_block=False,
    skip_scale_at="residual",
)

PAPER_STAGE_BASE_64 = StageConfig(
    unet=PAPER_BASE_64,
    diffusion=DiffusionConfig(schedule="cosine"),
    sampler=SamplerConfig(cond_scale=5.0),
    training=TrainingConfig(optimizer="adafactor"),
    image_size=64,
)
PAPER_STAGE_SR_256 = StageConfig(
    unet=PAPER_SR_256,
    diffusion=DiffusionConfig(schedule="cosine"),
    sampler=SamplerConfig(cond_scale=5.0),
    training=TrainingConfig(optimizer="adam"),
    image_size=256,
    lowres_image_size=64,
)
PAPER_STAGE_SR_1024 = StageConfig(
    unet=PAPER_SR_1024,
    diffusion=DiffusionConfig(schedule="linear"),
    sampler=SamplerConfig(cond_scale=5.0),
    training=TrainingConfig(optimizer="adam"),
    image_size=1024,
    lowres_image_size=256,
    train_crop_size=256,
)
PAPER_CASCADE = CascadeConfig(stages=(PAPER_STAGE_BASE_64, PAPER_STAGE_SR_256, PAPER_STAGE_SR_1024))


# ---- Small presets for CPUs ----

# Toy-world base model: 32×32, trainable on a CPU in minutes. Text from the tiny offline T5 (d_model 32).
TOY_BASE_32 = UNetConfig(
    kind="base",
    image_size=32,
    dim=32,
    channel_mults=(1, 2, 2),
    num_res_blocks=2,
    attn_resolutions=(16, 8),
    num_heads=4,
    text_embed_dim=TINY_T5_DIM,
)

# Toy super-resolution model 32→64 in the Efficient U-Net layout.
TOY_SR_64 = UNetConfig(
    kind="efficient",
    image_size=64,
    dim=32,
    channel_mults=(1, 2, 4),
    num_res_blocks=(1, 2, 2),
    attn_resolutions=(),
    num_heads=4,
    text_embed_dim=TINY_T5_DIM,
    lowres_cond=True,
    use_mid_block=False,
)

# Smallest useful networks for unit tests (seconds on a CPU).
TINY = UNetConfig(
    kind="base",
    image_size=16,
    dim=16,
    channel_mults=(1, 2),
    num_res_blocks=1,
    attn_resolutions=(8,),
    num_heads=2,
    text_embed_dim=TINY_T5_DIM,
    norm_groups=8,
)
TINY_EFFICIENT = UNetConfig(
    kind="efficient",
    image_size=16,
    dim=16,
    channel_mults=(1, 2),
    num_res_blocks=(1, 2),
    attn_resolutions=(),
    num_heads=2,
    text_embed_dim=TINY_T5_DIM,
    norm_groups=8,
    use_mid_block=False,
)
TINY_SR = dataclasses.replace(TINY_EFFICIENT, lowres_cond=True)

TOY_STAGE_BASE_32 = StageConfig(
    unet=TOY_BASE_32,
    training=TrainingConfig(lr=3e-4, warmup_steps=100, batch_size=32, num_steps=3000, ema_decay=0.999),
    image_size=32,
    text_encoder_name="tiny-t5-byt5",
    text_embed_dim=TINY_T5_DIM,
    max_text_len=64,
)
TOY_STAGE_SR_64 = StageConfig(
    unet=TOY_SR_64,
    training=TrainingConfig(lr=3e-4, warmup_steps=100, batch_size=16, num_steps=3000, ema_decay=0.999),
    image_size=64,
    lowres_image_size=32,
    text_encoder_name="tiny-t5-byt5",
    text_embed_dim=TINY_T5_DIM,
    max_text_len=64,
)
TOY_CASCADE = CascadeConfig(stages=(TOY_STAGE_BASE_32, TOY_STAGE_SR_64))
