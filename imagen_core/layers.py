"""Building blocks of the Imagen U-Nets (Saharia et al. 2022, App. B.1; Nichol & Dhariwal 2021 for the ADM parts).

Residual blocks with scale-shift norm, attention with the text sequence concatenated to keys and values
(through `scaled_dot_product_attention`, the text mask folded into `attn_mask`), attention pooling of the text,
timestep features, and the resampling ops. Shapes: B batch, C channels, H×W image, L text tokens, D text width,
E conditioning width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imagen_core.config import Activation, DownsampleMode, TextNorm, TimeEmbedding, UpsampleMode
from imagen_core.winograd import WinogradConv2d

ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "gelu": nn.GELU}


def activation_fn(name: str):
    """The functional form of a config's activation ("silu" or "gelu")."""
    return F.gelu if name == "gelu" else F.silu


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters, as improved-diffusion does for every output projection: each residual branch
    then starts as the identity and the network's first prediction is zero."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    # gcd keeps small test widths valid without a separate setting per width.
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class TimestepFeatures(nn.Module):
    """Features of a continuous time t ∈ [0, 1] (or a noise level): [B] -> [B, dim].

    "sinusoidal": the Transformer features of t · time_scale (Improved DDPM's timestep embedding).
    "fourier": learned random Fourier features of t (Kingma et al. 2021; Song et al. 2021).
    """

    def __init__(self, dim: int, *, kind: TimeEmbedding = "sinusoidal", time_scale: float = 1000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"TimestepFeatures: dim must be even, got {dim}")
        self.kind = kind
        self.time_scale = time_scale
        half = dim // 2
        if kind == "sinusoidal":
            freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
            self.register_buffer("freqs", freqs, persistent=False)
        else:
            self.freqs = nn.Parameter(torch.randn(half) * 16.0)

    def forward(self, time: Tensor) -> Tensor:
        time = time.float()
        if self.kind == "sinusoidal":
            args = (time * self.time_scale)[:, None] * self.freqs[None, :]
        else:
            args = 2 * math.pi * time[:, None] * self.freqs[None, :]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ConditioningMLP(nn.Module):
    """Timestep features then a two-layer MLP: [B] -> [B, E]."""

    def __init__(
        self,
        features_dim: int,
        cond_dim: int,
        *,
        kind: TimeEmbedding,
        time_scale: float,
        activation: Activation = "silu",
    ) -> None:
        super().__init__()
        self.features = TimestepFeatures(features_dim, kind=kind, time_scale=time_scale)
        self.mlp = nn.Sequential(
            nn.Linear(features_dim, cond_dim), ACTIVATIONS[activation](), nn.Linear(cond_dim, cond_dim)
        )

    def forward(self, time: Tensor) -> Tensor:
        return self.mlp(self.features(time))


class Downsample(nn.Module):
    """[B, C_in, H, W] -> [B, C_out, H/2, W/2]: stride-2 3×3 conv (the paper's "stride 2") or 2×2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int, *, mode: DownsampleMode = "conv") -> None:
        super().__init__()
        if mode == "conv":
            self.op = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)
        else:
            proj = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
            self.op = nn.Sequential(nn.AvgPool2d(2), proj)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """[B, C_in, H, W] -> [B, C_out, 2H, 2W]."""

    def __init__(self, in_channels: int, out_channels: int, *, mode: UpsampleMode = "nearest_conv") -> None:
        super().__init__()
        self.mode = mode
        if mode == "nearest_conv":
            self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        elif mode == "transposed":
            self.conv = nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1)
        else:
            self.conv = nn.Sequential(nn.Conv2d(in_channels, out_channels * 4, 1), nn.PixelShuffle(2))

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "nearest_conv":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        elif self.mode == "pixel_shuffle" and x.is_contiguous(memory_format=torch.channels_last):
            return self._pixel_shuffle_channels_last(x)
        return self.conv(x)

    def _pixel_shuffle_channels_last(self, x: Tensor) -> Tensor:
        """conv then PixelShuffle(2), for channels-last x: the same values, computed with the 1×1 conv's output channels
        reordered from (c, i, j) to (i, j, c) so that the shuffle moves whole channel vectors (PixelShuffle's own
        channels-last kernel and its backward gather single floats; about a fifth of the block's time at 128×128)."""
        conv = self.conv[0]
        c4, c_in = conv.weight.shape[:2]
        c = c4 // 4
        weight = conv.weight.view(c, 4, c_in, 1, 1).transpose(0, 1).reshape(c4, c_in, 1, 1)
        bias = conv.bias.view(c, 4).t().reshape(c4)
        h = F.conv2d(x, weight, bias)
        b, _, height, width = h.shape
        # [B, H, W, (i, j, c)] -> [B, H, i, W, j, c] = [B, 2H, 2W, C] channels-last
        out = h.permute(0, 2, 3, 1).reshape(b, height, width, 2, 2, c).permute(0, 1, 3, 2, 4, 5)
        return out.reshape(b, 2 * height, 2 * width, c).permute(0, 3, 1, 2)


class ResBlock(nn.Module):
    """BigGAN-style residual block with scale-shift norm (App. B.1; Improved DDPM's ResBlock).

    h = conv(act(GN(x))); h = GN(h) · (1 + scale) + shift with (scale, shift) = Linear(cond);
    h = conv(dropout(act(h))); out = (skip(x) + h) · residual_scale. `cond` arrives already activated (the U-Net
    applies SiLU to it once per forward instead of once per block: the same function, fewer passes).
    [B, C_in, H, W], cond [B, E] -> [B, C_out, H', W'] (H' = H, or H/2 or 2H with resample="down"/"up", BigGAN
    style: the resampling happens inside the block, on both branches). With cond_dim=0 the block is unconditioned
    (the Efficient U-Net's ResNetBlock, Fig. A.28, when conditioning enters once per DBlock/UBlock).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        cond_dim: int,
        norm_groups: int,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = True,
        residual_scale: float = 1.0,
        resample: str | None = None,
        activation: Activation = "silu",
        winograd: bool = False,
    ) -> None:
        super().__init__()
        self.act = activation_fn(activation)
        self.use_scale_shift_norm = use_scale_shift_norm
        self.residual_scale = residual_scale
        self.resample = resample
        self.norm1 = group_norm(in_channels, norm_groups)
        # WinogradConv2d is nn.Conv2d (same parameters) that may run as Winograd F(2×2, 3×3) on CPU (cpu_winograd).
        self.conv1 = WinogradConv2d(in_channels, out_channels, 3, padding=1)
        self.cond_proj = (
            nn.Linear(cond_dim, out_channels * (2 if use_scale_shift_norm else 1)) if cond_dim > 0 else None
        )
        self.norm2 = group_norm(out_channels, norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(WinogradConv2d(out_channels, out_channels, 3, padding=1))
        self.conv1.winograd = self.conv2.winograd = winograd
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def _resample(self, x: Tensor) -> Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: Tensor, cond: Tensor | None) -> Tensor:
        h = self.act(self.norm1(x))
        h = self._resample(h)
        x = self._resample(x)
        h = self.conv1(h)
        if self.cond_proj is None:
            h = self.norm2(h)
        elif self.use_scale_shift_norm:
            scale, shift = self.cond_proj(cond)[:, :, None, None].chunk(2, dim=1)
            h = torch.addcmul(shift, self.norm2(h), 1 + scale)
        else:
            h = self.norm2(h + self.cond_proj(cond)[:, :, None, None])
        h = self.conv2(self.dropout(self.act(h)))
        if self.residual_scale == 1.0:
            return self.skip(x) + h
        # In place on the sum's fresh tensor: the same values, one activation-sized allocation fewer per block.
        return torch.add(self.skip(x), h).mul_(self.residual_scale)


class FiLM(nn.Module):
    """Feature-wise modulation by the conditioning vector: x · (1 + scale) + shift, (scale, shift) = Linear(cond),
    cond already activated (see ResBlock).

    The Efficient U-Net's "CombineEmbs" (Fig. A.29/A.30) when conditioning enters once per block.
    x [B, C, H, W], cond [B, E] -> [B, C, H, W].
    """

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cond_dim, 2 * channels)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        scale, shift = self.proj(cond)[:, :, None, None].chunk(2, dim=1)
        return torch.addcmul(shift, x, 1 + scale)


class Attention(nn.Module):
    """Multi-head attention over image positions with the text sequence concatenated to keys and values.

    "For the base model we ... concatenate the text embedding sequence to the key-value pairs of each
    self-attention layer" (App. B.1); text embeddings pass a LayerNorm first. Without self-attention (the paper's
    256→1024 model) the queries attend to the text only, plus one learned null key/value so that a sample whose
    text is fully masked still has something to attend to.
    x [B, C, H, W], text_embeds [B, L, D] | None, text_mask [B, L] bool | None -> [B, C, H, W].
    Padding tokens (mask False) are excluded through `attn_mask` and so cannot change the output.
    """

    def __init__(
        self,
        channels: int,
        *,
        num_heads: int,
        norm_groups: int,
        text_embed_dim: int = 0,
        use_self_attn: bool = True,
        use_text: bool = True,
        text_norm: TextNorm = "layer",
        text_norm_groups: int = 32,
        null_kv: bool = True,
    ) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"Attention: channels={channels} is not divisible by num_heads={num_heads}")
        if not use_self_attn and not (use_text and text_embed_dim > 0):
            raise ValueError("Attention: without self-attention the layer needs text (text_embed_dim > 0)")
        self.num_heads = num_heads
        self.use_self_attn = use_self_attn
        self.norm = group_norm(channels, norm_groups)
        self.to_q = nn.Linear(channels, channels)
        self.to_kv = nn.Linear(channels, 2 * channels) if use_self_attn else None
        self.text_norm_kind = text_norm
        if use_text and text_embed_dim > 0:
            if text_norm == "layer":
                self.text_norm = nn.LayerNorm(text_embed_dim)
            elif text_norm == "group":
                self.text_norm = group_norm(text_embed_dim, text_norm_groups)
            else:
                self.text_norm = nn.Identity()
            self.text_to_kv = nn.Linear(text_embed_dim, 2 * channels)
        else:
            self.text_norm = None
            self.text_to_kv = None
        self.null_kv = None if use_self_attn or not null_kv else nn.Parameter(torch.randn(2, channels) * channels**-0.5)
        self.to_out = zero_init(nn.Linear(channels, channels))

    def forward(self, x: Tensor, text_embeds: Tensor | None = None, text_mask: Tensor | None = None) -> Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        q = self.to_q(tokens)
        keys: list[Tensor] = []
        values: list[Tensor] = []
        masks: list[Tensor | None] = []
        if self.to_kv is not None:
            k, v = self.to_kv(tokens).chunk(2, dim=-1)
            keys.append(k)
            values.append(v)
            masks.append(None)
        if self.null_kv is not None:
            null_k, null_v = self.null_kv.to(q.dtype)[:, None, None, :].expand(2, b, 1, c)
            keys.append(null_k)
            values.append(null_v)
            masks.append(None)
        if self.text_to_kv is not None and text_embeds is not None:
            if self.text_norm_kind == "group":
                # GroupNorm over [B, D, L]: statistics over channel groups and all tokens (DeepFloyd IF).
                normed = self.text_norm(text_embeds.transpose(1, 2)).transpose(1, 2)
            else:
                normed = self.text_norm(text_embeds)
            k, v = self.text_to_kv(normed).chunk(2, dim=-1)  # [B, L, C] each
            keys.append(k)
            values.append(v)
            masks.append(text_mask)
        k = torch.cat(keys, dim=1)
        v = torch.cat(values, dim=1)
        attn_mask = None
        if any(m is not None for m in masks):
            attn_mask = torch.cat(
                [
                    m if m is not None else torch.ones(b, kk.shape[1], dtype=torch.bool, device=x.device)
                    for m, kk in zip(masks, keys, strict=True)
                ],
                dim=1,
            )[:, None, None, :]  # [B, 1, 1, N]: broadcast over heads and queries

        def split_heads(t: Tensor) -> Tensor:
            return t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)  # [B, heads, N, C/heads]

        out = F.scaled_dot_product_attention(split_heads(q), split_heads(k), split_heads(v), attn_mask=attn_mask)
        out = self.to_out(out.transpose(1, 2).flatten(2))  # [B, HW, C]
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class TextAttentionPool(nn.Module):
    """Attention pooling of the text sequence into one vector, added to the timestep embedding (App. B.1).

    As CLIP's AttentionPool2d: the query is the masked mean of the (LayerNormed) tokens, which also joins the
    keys so that a sample whose text is fully masked pools to a finite vector.

    style="imagen": q/k/v project straight to cond_dim, then an output projection.
    style="deepfloyd": DeepFloyd IF's TextTimeEmbedding: attention at the text width, a learned positional
    embedding added to the query token, no output projection; then Linear to cond_dim and LayerNorm.
    text_embeds [B, L, D], text_mask [B, L] bool | None -> [B, E].
    """

    def __init__(self, text_embed_dim: int, cond_dim: int, *, num_heads: int, style: str = "imagen") -> None:
        super().__init__()
        width = cond_dim if style == "imagen" else text_embed_dim
        if width % num_heads:
            raise ValueError(f"TextAttentionPool: width {width} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.style = style
        self.norm = nn.LayerNorm(text_embed_dim)
        self.to_q = nn.Linear(text_embed_dim, width)
        self.to_kv = nn.Linear(text_embed_dim, 2 * width)
        if style == "imagen":
            self.pos_embed = None
            self.to_out = nn.Linear(cond_dim, cond_dim)
        else:
            self.pos_embed = nn.Parameter(torch.randn(1, text_embed_dim) / text_embed_dim**0.5)
            self.to_out = nn.Sequential(nn.Linear(text_embed_dim, cond_dim), nn.LayerNorm(cond_dim))

    def forward(self, text_embeds: Tensor, text_mask: Tensor | None = None) -> Tensor:
        b, length, _ = text_embeds.shape
        tokens = self.norm(text_embeds)
        if text_mask is None:
            text_mask = torch.ones(b, length, dtype=torch.bool, device=tokens.device)
        weights = text_mask[:, :, None].to(tokens.dtype)
        mean = (tokens * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp(min=1.0)  # [B, 1, D]
        if self.pos_embed is not None:
            mean = mean + self.pos_embed.to(mean.dtype)
        kv_tokens = torch.cat([mean, tokens], dim=1)
        attn_mask = torch.cat([torch.ones(b, 1, dtype=torch.bool, device=tokens.device), text_mask], dim=1)
        q = self.to_q(mean)
        k, v = self.to_kv(kv_tokens).chunk(2, dim=-1)

        def split_heads(t: Tensor) -> Tensor:
            return t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2)

        out = F.scaled_dot_product_attention(
            split_heads(q), split_heads(k), split_heads(v), attn_mask=attn_mask[:, None, None, :]
        )
        return self.to_out(out.transpose(1, 2).flatten(2)[:, 0])
