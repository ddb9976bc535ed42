"""3×3 convolutions as Winograd F(2×2, 3×3) (Lavin & Gray 2016) for CPU training.

On a CPU the direct (oneDNN) convolutions of a U-Net training step run near the core's peak FLOP rate, so they take
most of the step. Winograd's minimal filtering computes the same 3×3, stride-1, zero-padded convolution with 16
multiplies per 2×2 output tile instead of 36: per tile, the input's 4×4 patch and the filter are transformed
(additions only, and halves for the filter), multiplied element-wise over the 16 positions (one matrix product over
channels per position), and the 16 products transformed back to the 2×2 outputs. Forward and both gradients are
such products, so a training step's convolution multiplies drop 2.25-fold; the transforms are cheap memory passes.

The function is the convolution's: only the rounding differs (relative differences of about 1e-6 in fp32; the
transforms' coefficients are 0, ±1 and ±1/2, so F(2×2, 3×3) is the numerically benign member of the family).
Used by `WinogradConv2d` when its `winograd` flag is set (the U-Net's `cpu_winograd` option), on CPU fp32 tensors
in channels-last layout, where it pays: wide layers (the transforms cost per element, the products per element and
channel) at moderate resolution (the transformed tensors must stay in cache). Everything else takes nn.Conv2d's own
path.

Layout: NHWC throughout (a channels-last [B, C, H, W] tensor is a contiguous [B, H, W, C] one); T = B·(H/2)·(W/2)
tiles; the 16 transformed positions lead, so that each product is one [T, C_in] × [C_in, C_out] matrix product.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Filter transform G (4×3) of F(2, 3); the 2-D transform of a 3×3 filter g is G g Gᵀ, i.e. kron(G, G) on the
# flattened filter. The input transform Bᵀ and output transform Aᵀ have entries 0 and ±1 and are written out as
# additions below.
_G = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
_KG = torch.kron(_G, _G)  # [16, 9]: position (ξ, ν) from filter tap (k, l)

# The layers where the transforms' cost stays below the multiplies saved, measured for one training step's forward and
# backward at batch 2 on one AVX-512 core (fp32, channels-last; Winograd ÷ direct time): 168 channels at 32×32 0.81,
# 336 at 16×16 0.85, 256 at 64×64 0.82, 512 at 32×32 0.62, 1024 at 16×16 0.77; 84 at 64×64 0.94 (left out);
# 128 at 128×128 1.6: above 64×64 the transformed tensors outgrow the caches and the memory passes cost more than
# the multiplies saved.
MIN_CHANNELS = 128
MAX_PIXELS = 64 * 64
# Below 8×8 there are too few tiles for the matrix products to run efficiently.
MIN_SIZE = 8


def _filter_transform(weight: Tensor) -> Tensor:
    """[O, C, 3, 3] -> U [16, C, O] (a strided view, each [C, O] matrix column-major: BLAS takes it as it is)."""
    o, c = weight.shape[:2]
    taps = weight.permute(0, 2, 3, 1).reshape(o, 9, c)  # a view when the weight is channels-last
    return (_KG.to(weight.dtype) @ taps).permute(1, 2, 0)  # [O, 16, C] -> [16, C, O]


def _filter_transform_grad(du_t: Tensor, like: Tensor) -> Tensor:
    """The transpose of _filter_transform: dUᵀ [16, O, C] -> dW [O, C, 3, 3] in `like`'s memory format."""
    _, o, c = du_t.shape
    dw = (_KG.T.to(du_t.dtype) @ du_t.transpose(0, 1)).view(o, 3, 3, c).permute(0, 3, 1, 2)  # channels-last
    if like.is_contiguous(memory_format=torch.channels_last):
        return dw
    return dw.contiguous()


def _input_transform(x: Tensor) -> Tensor:
    """NHWC x [B, H, W, C] -> V [16, T, C]: Bᵀ d B of every 4×4 patch d (stride 2, zero padding 1).

    Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] on the patch rows (patch row i of tile t is padded
    row 2t + i), then the same on the columns; each step is four whole-tensor operations.
    """
    b, h, w, c = x.shape
    th, tw = h // 2, w // 2
    xp = F.pad(x, (0, 0, 1, 1, 1, 1))  # [B, H+2, W+2, C]
    r0, r1, r2, r3 = (xp[:, i : i + 2 * th : 2] for i in range(4))  # [B, th, W+2, C] each
    rows = x.new_empty(4, b, th, w + 2, c)
    torch.sub(r0, r2, out=rows[0])
    torch.add(r1, r2, out=rows[1])
    torch.sub(r2, r1, out=rows[2])
    torch.sub(r1, r3, out=rows[3])
    c0, c1, c2, c3 = (rows[:, :, :, j : j + 2 * tw : 2] for j in range(4))  # [4, B, th, tw, C] each
    v = x.new_empty(4, 4, b, th, tw, c)
    torch.sub(c0, c2, out=v[:, 0])
    torch.add(c1, c2, out=v[:, 1])
    torch.sub(c2, c1, out=v[:, 2])
    torch.sub(c1, c3, out=v[:, 3])
    return v.view(16, b * th * tw, c)


def _spread(g0: Tensor, g1: Tensor, g2: Tensor, g3: Tensor, out: Tensor, dim: int) -> None:
    """out = the transpose of one step of _input_transform along `dim` (tiles there; `out` holds the unpadded rows).

    With p = B g (p0 = g0, p1 = g1 - g2 + g3, p2 = g1 + g2 - g0, p3 = -g3), patch row i of tile t lands on unpadded
    row 2t + i - 1: row 2t gets p1[t] + p3[t-1], row 2t + 1 gets p2[t] + p0[t+1]; rows -1 and H are the padding.
    """

    def at(start: int, stop: int | None = None, step: int = 1) -> tuple[slice, ...]:
        return (slice(None),) * dim + (slice(start, stop, step),)

    even, odd = out[at(0, None, 2)], out[at(1, None, 2)]
    torch.sub(g1, g2, out=even)
    even.add_(g3)
    even[at(1)].sub_(g3[at(0, -1)])
    torch.add(g1, g2, out=odd)
    odd.sub_(g0)
    odd[at(0, -1)].add_(g0[at(1)])


def _input_transform_grad(dv: Tensor, b: int, h: int, w: int) -> Tensor:
    """The transpose of _input_transform: dV [16, T, C] -> dx [B, H, W, C] (NHWC, contiguous)."""
    c = dv.shape[-1]
    th, tw = h // 2, w // 2
    dv = dv.view(4, 4, b, th, tw, c)
    rows = dv.new_empty(4, b, th, w, c)
    _spread(dv[:, 0], dv[:, 1], dv[:, 2], dv[:, 3], rows, dim=3)  # the columns of all four row groups at once
    dx = dv.new_empty(b, h, w, c)
    _spread(rows[0], rows[1], rows[2], rows[3], dx, dim=1)
    return dx


def _output_transform(m: Tensor, b: int, h: int, w: int) -> Tensor:
    """M [16, T, O] -> y [B, H, W, O] (NHWC, contiguous): Aᵀ m A per tile, Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]."""
    o = m.shape[-1]
    th, tw = h // 2, w // 2
    m = m.view(4, 4, b, th, tw, o)
    s = m.new_empty(2, 4, b, th, tw, o)  # the tiles' output rows p = 0, 1, still transformed along the columns
    torch.add(m[0], m[1], out=s[0])
    s[0].add_(m[2])
    torch.sub(m[1], m[2], out=s[1])
    s[1].sub_(m[3])
    s0, s1, s2, s3 = s.permute(1, 2, 3, 0, 4, 5).unbind(0)  # [B, th, 2 (p), tw, O] each
    y = m.new_empty(b, th, 2, tw, 2, o)
    torch.add(s0, s1, out=y[:, :, :, :, 0])
    y[:, :, :, :, 0].add_(s2)
    torch.sub(s1, s2, out=y[:, :, :, :, 1])
    y[:, :, :, :, 1].sub_(s3)
    return y.view(b, h, w, o)


def _output_transform_grad(g: Tensor) -> Tensor:
    """The transpose of _output_transform: dy [B, H, W, O] -> dM [16, T, O]."""
    b, h, w, o = g.shape
    th, tw = h // 2, w // 2
    gt = g.view(b, th, 2, tw, 2, o)
    g0, g1 = gt[:, :, 0], gt[:, :, 1]  # [B, th, tw, 2 (q), O]: the tiles' output rows
    rows = g.new_empty(4, b, th, tw, 2, o)  # Σ_p Aᵀ[p, ξ] g_p
    rows[0].copy_(g0)
    torch.add(g0, g1, out=rows[1])
    torch.sub(g0, g1, out=rows[2])
    torch.neg(g1, out=rows[3])
    q0, q1 = rows[:, :, :, :, 0], rows[:, :, :, :, 1]  # [4, B, th, tw, O]
    dm = g.new_empty(4, 4, b, th, tw, o)
    dm[:, 0].copy_(q0)
    torch.add(q0, q1, out=dm[:, 1])
    torch.sub(q0, q1, out=dm[:, 2])
    torch.neg(q1, out=dm[:, 3])
    return dm.view(16, b * th * tw, o)


class _WinogradConv3x3(torch.autograd.Function):
    """conv2d(x, weight, bias, stride=1, padding=1) for channels-last x [B, C, H, W] with H and W even."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        b, _, h, w = x.shape
        v = _input_transform(x.permute(0, 2, 3, 1))
        y = _output_transform(torch.bmm(v, _filter_transform(weight)), b, h, w)
        if bias is not None:
            y.add_(bias)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return y.permute(0, 3, 1, 2)  # channels-last [B, O, H, W]

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        b, _, h, w = x.shape
        g = grad.permute(0, 2, 3, 1).contiguous()  # NHWC; free when grad is channels-last
        dm = _output_transform_grad(g)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dv = torch.bmm(dm, _filter_transform(weight).transpose(1, 2))
            dx = _input_transform_grad(dv, b, h, w).permute(0, 3, 1, 2)
        if ctx.needs_input_grad[1]:
            # The input transform is recomputed rather than kept: 4× the input's size per layer otherwise.
            v = _input_transform(x.permute(0, 2, 3, 1))
            dw = _filter_transform_grad(torch.bmm(dm.transpose(1, 2), v), weight)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = g.sum((0, 1, 2))
        return dx, dw, db


def winograd_conv3x3(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """F.conv2d(x, weight, bias, padding=1) by Winograd F(2×2, 3×3); x channels-last [B, C, H, W], H and W even."""
    return _WinogradConv3x3.apply(x, weight, bias)


class WinogradConv2d(nn.Conv2d):
    """nn.Conv2d (same parameters and state dict) that runs as Winograd F(2×2, 3×3) when `winograd` is set and the
    call qualifies: a 3×3, stride-1, padding-1, ungrouped layer at least MIN_CHANNELS wide on both sides, fp32 CPU
    tensors in channels-last layout with even H and W of at least MIN_SIZE and at most MAX_PIXELS pixels, autocast
    off. Otherwise nn.Conv2d's forward."""

    winograd: bool = False

    def _qualifies(self, x: Tensor) -> bool:
        return (
            self.winograd
            and self.kernel_size == (3, 3)
            and self.stride == (1, 1)
            and self.padding == (1, 1)
            and self.dilation == (1, 1)
            and self.groups == 1
            and self.padding_mode == "zeros"
            and min(self.in_channels, self.out_channels) >= MIN_CHANNELS
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and x.ndim == 4
            and x.shape[2] % 2 == 0
            and x.shape[3] % 2 == 0
            and min(x.shape[2], x.shape[3]) >= MIN_SIZE
            and x.shape[2] * x.shape[3] <= MAX_PIXELS
            and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.is_autocast_enabled("cpu")
        )

    def forward(self, x: Tensor) -> Tensor:
        if self._qualifies(x):
            return winograd_conv3x3(x, self.weight, self.bias)
        return super().forward(x)
