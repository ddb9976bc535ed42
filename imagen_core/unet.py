"""The Imagen U-Nets (Saharia et al. 2022, Sec. 2.4–2.5 and App. B.1).

- `UNet`: the Improved-DDPM layout (Nichol & Dhariwal 2021) used by the paper's 64×64 base model
  (`kind="base"`) and, as the comparison baseline for the Efficient U-Net, the Improved-DDPM/Palette layout
  (`kind="standard"`): full-resolution convolutions first, equal residual blocks per level, a decoder with one more
  block per level than the encoder, each fed an encoder skip.
- `EfficientUNet`: the paper's Efficient U-Net (App. B.1, Fig. A.28–A.31) for the super-resolution stages.

Both follow one call contract (see `build_unet`):

    unet(x_t [B, C, H, W], time [B] in [0, 1], *, text_embeds [B, L, D] | None, text_mask [B, L] bool | None,
         lowres_cond_img [B, C, H, W] | None, lowres_noise_level [B] | None) -> [B, C_out, H, W]

The output is the network's prediction (ε or v, as the stage's DiffusionConfig says). `text_embeds=None` runs the
network with no text at all; the paper's unconditional branch is all-zero text embeddings (conditioning dropout
zeroes them), which this network processes like any other text. Padding tokens (text_mask False) never change the
output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imagen_core.config import UNetConfig
from imagen_core.layers import (
    ACTIVATIONS,
    Attention,
    ConditioningMLP,
    Downsample,
    FiLM,
    ResBlock,
    TextAttentionPool,
    Upsample,
    activation_fn,
    group_norm,
    zero_init,
)


class SkipMerge(nn.Module):
    """Join an encoder skip to the decoder stream: concatenate along channels, or add (a 1×1 conv matches widths).

    The skip is scaled by `scale` first (the paper's 1/√2 when skip_scale_at is "unet_skip" or "both").
    x [B, C_x, H, W], skip [B, C_s, H, W] -> [B, C_x + C_s, H, W] (concat) or [B, C_x, H, W] (add).
    """

    def __init__(self, x_channels: int, skip_channels: int, *, mode: str, scale: float) -> None:
        super().__init__()
        self.mode = mode
        self.scale = scale
        self.proj = (
            nn.Conv2d(skip_channels, x_channels, 1) if mode == "add" and skip_channels != x_channels else nn.Identity()
        )
        self.out_channels = x_channels + skip_channels if mode == "concat" else x_channels

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        skip = skip * self.scale if self.scale != 1.0 else skip
        if self.mode == "concat":
            return torch.cat([x, skip], dim=1)
        return x + self.proj(skip)


class ResAttnBlock(nn.Module):
    """A residual block, optionally followed by an attention layer. [B, C_in, H, W] -> [B, C_out, H, W]."""

    def __init__(self, res: ResBlock, attn: Attention | None) -> None:
        super().__init__()
        self.res = res
        self.attn = attn

    def forward(self, x: Tensor, cond: Tensor, text_embeds: Tensor | None, text_mask: Tensor | None) -> Tensor:
        x = self.res(x, cond)
        if self.attn is not None:
            x = self.attn(x, text_embeds, text_mask)
        return x


class _UNetCommon(nn.Module):
    """Conditioning shared by both layouts: cond = time MLP + attention-pooled text + low-res noise level MLP."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        cond_dim = config.resolved_cond_dim
        features_dim = config.level_channels[0]
        mlp = dict(kind=config.time_embedding, time_scale=config.time_scale, activation=config.activation)
        self.time_embed = ConditioningMLP(features_dim, cond_dim, **mlp)
        has_text = config.text_embed_dim > 0
        self.text_proj = (
            nn.Sequential(
                nn.LayerNorm(config.text_embed_dim) if config.text_proj_norm else nn.Identity(),
                nn.Linear(config.text_embed_dim, config.text_proj_dim),
            )
            if has_text and config.text_proj_dim is not None
            else None
        )
        if has_text and config.use_text_attn_pool:
            # "imagen" pools the text the attention layers see; "deepfloyd" the raw encoder output.
            deepfloyd = config.text_pool_style == "deepfloyd"
            pool_width = config.text_embed_dim if deepfloyd else config.text_width
            heads = config.text_pool_heads or config.heads_for(pool_width if deepfloyd else cond_dim)
            self.text_pool = TextAttentionPool(pool_width, cond_dim, num_heads=heads, style=config.text_pool_style)
        else:
            self.text_pool = None
        # Noise conditioning augmentation: "we condition the SR model on aug_level" (Sec. 2.5).
        self.lowres_noise_embed = ConditioningMLP(features_dim, cond_dim, **mlp) if config.lowres_cond else None
        self.act = activation_fn(config.activation)
        self.in_channels = config.in_channels * (2 if config.lowres_cond else 1)

    def _res_block(
        self, in_channels: int, out_channels: int, *, resample: str | None = None, mid: bool = False
    ) -> ResBlock:
        c = self.config
        residual_scale = c.skip_scale if c.skip_scale_at in ("residual", "both") else 1.0
        if mid and c.mid_residual_scale is not None:
            residual_scale = c.mid_residual_scale
        return ResBlock(
            in_channels,
            out_channels,
            cond_dim=c.resolved_cond_dim if c.cond_placement == "res_block" else 0,
            norm_groups=c.norm_groups,
            dropout=c.dropout,
            use_scale_shift_norm=c.use_scale_shift_norm,
            residual_scale=residual_scale,
            resample=resample,
            activation=c.activation,
            winograd=c.cpu_winograd and c.channels_last,
        )

    def _attention(self, channels: int) -> Attention:
        c = self.config
        return Attention(
            channels,
            num_heads=c.heads_for(channels),
            norm_groups=c.norm_groups,
            text_embed_dim=c.text_width,
            use_self_attn=c.use_self_attn,
            use_text=c.use_text_cross_attn,
            text_norm=c.text_norm,
            text_norm_groups=c.text_norm_groups,
            null_kv=c.null_kv_without_self_attn,
        )

    def _skip_merge(self, x_channels: int, skip_channels: int) -> SkipMerge:
        c = self.config
        scale = c.skip_scale if c.skip_scale_at in ("unet_skip", "both") else 1.0
        return SkipMerge(x_channels, skip_channels, mode=c.skip_mode, scale=scale)

    def _out(self, channels: int) -> nn.Sequential:
        return nn.Sequential(
            group_norm(channels, self.config.norm_groups),
            ACTIVATIONS[self.config.activation](),
            zero_init(nn.Conv2d(channels, self.config.out_channels, 3, padding=1)),
        )

    def _prepare(
        self,
        x_t: Tensor,
        time: Tensor,
        text_embeds: Tensor | None,
        text_mask: Tensor | None,
        lowres_cond_img: Tensor | None,
        lowres_noise_level: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        """Check the inputs and return (network input [B, C_in, H, W], cond [B, E], text_embeds, text_mask).

        `cond` is returned as the blocks consume it: activated once here when the blocks would each activate it.
        """
        c = self.config
        name = type(self).__name__
        if x_t.ndim != 4 or x_t.shape[1] != c.in_channels:
            raise ValueError(f"{name}: x_t must be [B, {c.in_channels}, H, W], got {tuple(x_t.shape)}")
        b, _, h, w = x_t.shape
        factor = 2**self.num_halvings
        if h % factor or w % factor:
            raise ValueError(f"{name}: H and W must be divisible by {factor}, got {h}×{w}")
        if time.shape != (b,):
            raise ValueError(f"{name}: time must be [B]=[{b}], got {tuple(time.shape)}")
        if text_embeds is not None:
            if c.text_embed_dim == 0:
                raise ValueError(f"{name}: text_embeds given to an unconditional network (text_embed_dim=0)")
            if text_embeds.ndim != 3 or text_embeds.shape[0] != b or text_embeds.shape[2] != c.text_embed_dim:
                raise ValueError(
                    f"{name}: text_embeds must be [B, L, {c.text_embed_dim}] with B={b}, got {tuple(text_embeds.shape)}"
                )
            if text_mask is not None:
                if text_mask.shape != text_embeds.shape[:2]:
                    raise ValueError(
                        f"{name}: text_mask must be [B, L]={tuple(text_embeds.shape[:2])}, got {tuple(text_mask.shape)}"
                    )
                text_mask = text_mask.bool()
            raw_text_embeds = text_embeds
            if self.text_proj is not None:
                text_embeds = self.text_proj(text_embeds)
        else:
            text_mask = None

        cond = self.time_embed(time)
        if self.text_pool is not None and text_embeds is not None:
            pooled = raw_text_embeds if c.text_pool_style == "deepfloyd" else text_embeds
            cond = cond + self.text_pool(pooled, text_mask)
        if c.lowres_cond:
            if lowres_cond_img is None:
                raise ValueError(f"{name}: a super-resolution network (lowres_cond=True) needs lowres_cond_img")
            if lowres_cond_img.shape != x_t.shape:
                raise ValueError(
                    f"{name}: lowres_cond_img must be upsampled to x_t's shape {tuple(x_t.shape)}, "
                    f"got {tuple(lowres_cond_img.shape)}"
                )
            if lowres_noise_level is None:
                lowres_noise_level = torch.zeros(b, device=x_t.device)
            cond = cond + self.lowres_noise_embed(lowres_noise_level)
            x = torch.cat([x_t, lowres_cond_img.to(x_t.dtype)], dim=1)
        else:
            if lowres_cond_img is not None:
                raise ValueError(f"{name}: lowres_cond_img given to a network built with lowres_cond=False")
            x = x_t
        if c.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if c.cond_act_after_sum:
            cond = self.act(cond)
        if c.cond_act_in_blocks:
            cond = self.act(cond)
        return x, cond, text_embeds, text_mask

    def _set_memory_format(self) -> None:
        """With config.channels_last, store the convolution weights channels-last too: oneDNN then runs the
        convolutions and their backward without converting the weights (and their gradients) on every call.
        Loading a state dict copies into these tensors and keeps their layout; saved checkpoints are contiguous."""
        if self.config.channels_last:
            self.to(memory_format=torch.channels_last)

    @property
    def num_halvings(self) -> int:
        raise NotImplementedError


class UNet(_UNetCommon):
    """Improved-DDPM U-Net: the paper's base model (kind="base") and the standard layout (kind="standard").

    Level i runs at image_size / 2**i with dim · channel_mults[i] channels; num_res_blocks residual blocks per level
    in the encoder and num_res_blocks + 1 in the decoder, every decoder block fed one encoder skip; attention after
    each residual block of a level in attn_resolutions; a middle residual–attention–residual block.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        c = config
        chans = c.level_channels
        blocks = c.res_blocks_per_level
        attn = c.attention_levels
        n_levels = len(chans)

        ch = chans[0]
        self.input_conv = nn.Conv2d(self.in_channels, ch, 3, padding=1)
        skip_channels = [ch]
        self.encoder = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        for i in range(n_levels):
            level = nn.ModuleList()
            for _ in range(blocks[i]):
                attention = self._attention(chans[i]) if attn[i] else None
                level.append(ResAttnBlock(self._res_block(ch, chans[i]), attention))
                ch = chans[i]
                skip_channels.append(ch)
            self.encoder.append(level)
            if i < n_levels - 1:
                down = (
                    self._res_block(ch, ch, resample="down")
                    if c.resblock_updown
                    else Downsample(ch, ch, mode=c.downsample_mode)
                )
                self.downsamplers.append(down)
                skip_channels.append(ch)

        if c.use_mid_block:
            self.mid = ResAttnBlock(self._res_block(ch, ch, mid=True), self._attention(ch) if c.has_mid_attn else None)
            self.mid_out = self._res_block(ch, ch, mid=True)
        else:
            self.mid = None
            self.mid_out = None

        self.decoder = nn.ModuleList()
        self.decoder_merges = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for i in reversed(range(n_levels)):
            level = nn.ModuleList()
            merges = nn.ModuleList()
            for _ in range(blocks[i] + 1):
                merge = self._skip_merge(ch, skip_channels.pop())
                merges.append(merge)
                level.append(
                    ResAttnBlock(
                        self._res_block(merge.out_channels, chans[i]), self._attention(chans[i]) if attn[i] else None
                    )
                )
                ch = chans[i]
            self.decoder.append(level)
            self.decoder_merges.append(merges)
            if i > 0:
                up = (
                    self._res_block(ch, ch, resample="up")
                    if c.resblock_updown
                    else Upsample(ch, ch, mode=c.upsample_mode)
                )
                self.upsamplers.append(up)
        self.out = self._out(ch)
        self._set_memory_format()

    @property
    def num_halvings(self) -> int:
        return len(self.config.channel_mults) - 1

    def _resample(self, op: nn.Module, x: Tensor, cond: Tensor) -> Tensor:
        return op(x, cond) if isinstance(op, ResBlock) else op(x)

    def forward(
        self,
        x_t: Tensor,
        time: Tensor,
        *,
        text_embeds: Tensor | None = None,
        text_mask: Tensor | None = None,
        lowres_cond_img: Tensor | None = None,
        lowres_noise_level: Tensor | None = None,
    ) -> Tensor:
        """x_t [B, C, H, W], time [B] in [0, 1] -> prediction [B, C_out, H, W] (see the module docstring)."""
        x, cond, text_embeds, text_mask = self._prepare(
            x_t, time, text_embeds, text_mask, lowres_cond_img, lowres_noise_level
        )
        h = self.input_conv(x)
        skips = [h]
        for i, level in enumerate(self.encoder):
            for block in level:
                h = block(h, cond, text_embeds, text_mask)
                skips.append(h)
            if i < len(self.downsamplers):
                h = self._resample(self.downsamplers[i], h, cond)
                skips.append(h)
        if self.mid is not None:
            h = self.mid(h, cond, text_embeds, text_mask)
            h = self.mid_out(h, cond)
        for j, (level, merges) in enumerate(zip(self.decoder, self.decoder_merges, strict=True)):
            for block, merge in zip(level, merges, strict=True):
                h = block(merge(h, skips.pop()), cond, text_embeds, text_mask)
            if j < len(self.upsamplers):
                h = self._resample(self.upsamplers[j], h, cond)
        return self.out(h).contiguous()


class DBlock(nn.Module):
    """Efficient U-Net DBlock (Fig. A.29): downsample FIRST (stride 2), then residual blocks, then attention.

    [B, C_in, H, W] -> [B, C_out, H/2, W/2]. Doing the halving before the convolutions is one of the paper's three
    changes: the block's convolutions run at the lower resolution.
    """

    def __init__(self, down: nn.Module, film: FiLM | None, blocks: list[ResAttnBlock], attn: Attention | None) -> None:
        super().__init__()
        self.down = down
        self.film = film
        self.blocks = nn.ModuleList(blocks)
        self.attn = attn

    def forward(self, x: Tensor, cond: Tensor, text_embeds: Tensor | None, text_mask: Tensor | None) -> Tensor:
        x = self.down(x)
        if self.film is not None:
            x = self.film(x, cond)
        for block in self.blocks:
            x = block(x, cond, text_embeds, text_mask)
        if self.attn is not None:
            x = self.attn(x, text_embeds, text_mask)
        return x


class UBlock(nn.Module):
    """Efficient U-Net UBlock (Fig. A.30): skip merge, residual blocks, attention, then upsample LAST.

    x [B, C_x, H, W], skip [B, C_s, H, W] -> [B, C_out, 2H, 2W]. The lowest UBlock has no merge: its input is its
    DBlock's output, and concatenating that tensor to itself would only re-parametrise the first convolution.
    """

    def __init__(
        self,
        merge: SkipMerge | None,
        film: FiLM | None,
        blocks: list[ResAttnBlock],
        attn: Attention | None,
        up: Upsample,
    ) -> None:
        super().__init__()
        self.merge = merge
        self.film = film
        self.blocks = nn.ModuleList(blocks)
        self.attn = attn
        self.up = up

    def forward(
        self, x: Tensor, skip: Tensor, cond: Tensor, text_embeds: Tensor | None, text_mask: Tensor | None
    ) -> Tensor:
        if self.merge is not None:
            x = self.merge(x, skip)
        if self.film is not None:
            x = self.film(x, cond)
        for block in self.blocks:
            x = block(x, cond, text_embeds, text_mask)
        if self.attn is not None:
            x = self.attn(x, text_embeds, text_mask)
        return self.up(x)


class EfficientUNet(_UNetCommon):
    """The paper's Efficient U-Net (App. B.1, Fig. A.28–A.31).

    A full-resolution 3×3 conv to dim channels, then one DBlock per level (level i runs at image_size / 2**(i+1)
    with dim · channel_mults[i] channels and num_res_blocks[i] residual blocks), then one UBlock per level in reverse,
    each but the lowest concatenating (or adding) the output of its DBlock, and a full-resolution output conv.
    Conditioning enters every residual block (scale-shift norm) or once per block (FiLM, config.cond_placement).
    Compared with the
    Improved-DDPM layout this (1) moves parameters to low resolution by giving it more residual blocks, (2) scales
    the skip connections by 1/√2, and (3) downsamples before a DBlock's convolutions and upsamples after a UBlock's,
    so no residual block runs at full resolution. Attention only at the levels of `config.attention_levels` (the
    lowest by default); config.use_self_attn=False keeps text cross-attention only (the 256→1024 model).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        c = config
        chans = c.level_channels
        blocks = c.res_blocks_per_level
        attn = c.attention_levels
        n_levels = len(chans)

        per_res_block = c.efficient_attn_placement == "res_block"

        def res_attn(in_ch: int, out_ch: int, level: int) -> ResAttnBlock:
            attention = self._attention(out_ch) if attn[level] and per_res_block else None
            return ResAttnBlock(self._res_block(in_ch, out_ch), attention)

        def block_attn(level: int) -> Attention | None:
            return self._attention(chans[level]) if attn[level] and not per_res_block else None

        def film(channels: int) -> FiLM | None:
            return FiLM(channels, c.resolved_cond_dim) if c.cond_placement == "block" else None

        ch = c.dim
        self.input_conv = nn.Conv2d(self.in_channels, ch, 3, padding=1)
        self.dblocks = nn.ModuleList()
        for i in range(n_levels):
            down = Downsample(ch, chans[i], mode=c.downsample_mode)
            res = [res_attn(chans[i], chans[i], i) for _ in range(blocks[i])]
            self.dblocks.append(DBlock(down, film(chans[i]), res, block_attn(i)))
            ch = chans[i]

        if c.use_mid_block:
            self.mid = ResAttnBlock(self._res_block(ch, ch, mid=True), self._attention(ch) if c.has_mid_attn else None)
            self.mid_out = self._res_block(ch, ch, mid=True)
        else:
            self.mid = None
            self.mid_out = None

        self.ublocks = nn.ModuleList()
        for i in reversed(range(n_levels)):
            lowest = i == n_levels - 1 and self.mid is None
            merge = None if lowest else self._skip_merge(ch, chans[i])
            in_ch = ch if merge is None else merge.out_channels
            res = [res_attn(in_ch, chans[i], i)]
            res += [res_attn(chans[i], chans[i], i) for _ in range(blocks[i] - 1)]
            up = Upsample(chans[i], chans[i], mode=c.upsample_mode)
            self.ublocks.append(UBlock(merge, film(in_ch), res, block_attn(i), up))
            ch = chans[i]
        self.out = self._out(ch)
        self._set_memory_format()

    @property
    def num_halvings(self) -> int:
        return len(self.config.channel_mults)

    def forward(
        self,
        x_t: Tensor,
        time: Tensor,
        *,
        text_embeds: Tensor | None = None,
        text_mask: Tensor | None = None,
        lowres_cond_img: Tensor | None = None,
        lowres_noise_level: Tensor | None = None,
    ) -> Tensor:
        """x_t [B, C, H, W], time [B] in [0, 1] -> prediction [B, C_out, H, W] (see the module docstring)."""
        x, cond, text_embeds, text_mask = self._prepare(
            x_t, time, text_embeds, text_mask, lowres_cond_img, lowres_noise_level
        )
        h = self.input_conv(x)
        skips = []
        for dblock in self.dblocks:
            h = dblock(h, cond, text_embeds, text_mask)
            skips.append(h)
        if self.mid is not None:
            h = self.mid(h, cond, text_embeds, text_mask)
            h = self.mid_out(h, cond)
        for ublock in self.ublocks:
            h = ublock(h, skips.pop(), cond, text_embeds, text_mask)
        return self.out(h).contiguous()


def build_unet(config: UNetConfig) -> UNet | EfficientUNet:
    """The network for a config: `EfficientUNet` for kind="efficient", `UNet` for "base" and "standard"."""
    if config.kind == "efficient":
        return EfficientUNet(config)
    return UNet(config)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def upsample_lowres(lowres_img: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Upsample a low-res image [B, C, h, w] to [B, C, H, W] for `lowres_cond_img` (bilinear, antialias off)."""
    return F.interpolate(lowres_img, size=size, mode="bilinear", align_corners=False)
