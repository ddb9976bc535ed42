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
channel). Everything else takes nn.Conv2d's own path.

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

# The layers where the transforms' cost stays below the multiplies saved (measured on one AVX-512 core: 168 and 336
# channels gain, 84 does not).
MIN_CHANNELS = 128
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
    """NHWC x [B, H, W, C] -> V [16, T, C]: Bᵀ d B of every 4×4 patch d (stride 2, zero padding 1)."""
    b, h, w, c = x.shape
    th, tw = h // 2, w // 2
    xp = F.pad(x, (0, 0, 1, 1, 1, 1))  # [B, H+2, W+2, C]
    # Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] on the patch rows (patch row i of tile t is
    # padded row 2t + i), then the same on the columns.
    r0, r1, r2, r3 = (xp[:, i : i + 2 * th : 2] for i in range(4))  # [B, th, W+2, C] each
    rows = (r0 - r2, r1 + r2, r2 - r1, r1 - r3)
    v = x.new_empty(4, 4, b, th, tw, c)
    for k, r in enumerate(rows):
        c0, c1, c2, c3 = (r[:, :, j : j + 2 * tw : 2] for j in range(4))
        torch.sub(c0, c2, out=v[k, 0])
        torch.add(c1, c2, out=v[k, 1])
        torch.sub(c2, c1, out=v[k, 2])
        torch.sub(c1, c3, out=v[k, 3])
    return v.view(16, b * th * tw, c)


def _input_transform_grad(dv: Tensor, b: int, h: int, w: int) -> Tensor:
    """The transpose of _input_transform: dV [16, T, C] -> dx [B, H, W, C] (NHWC, contiguous).

    Each patch row i of tile t lands on (unpadded) row 2t + i - 1: rows 2t come from i = 1 of tile t and i = 3 of tile
    t - 1; rows 2t + 1 from i = 2 of tile t and i = 0 of tile t + 1. The same holds for columns.
    """
    c = dv.shape[-1]
    th, tw = h // 2, w // 2
    dv = dv.view(4, 4, b, th, tw, c)

    def spread(p0: Tensor, p1: Tensor, p2: Tensor, p3: Tensor, out: Tensor, dim: int) -> None:
        # Place the patch rows p_i (tile t along `dim`) on `out`'s rows: 2t <- p1[t] + p3[t-1], 2t+1 <- p2[t] + p0[t+1].
        def rows(start: int, stop: int | None = None, step: int = 1) -> tuple[slice, ...]:
            return (slice(None),) * dim + (slice(start, stop, step),)

        even, odd = out[rows(0, None, 2)], out[rows(1, None, 2)]
        even.copy_(p1)
        even[rows(1)].add_(p3[rows(0, -1)])
        odd.copy_(p2)
        odd[rows(0, -1)].add_(p0[rows(1)])

    def patch(g0: Tensor, g1: Tensor, g2: Tensor, g3: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        # B = (Bᵀ)ᵀ applied to the four transformed rows: p_i = Σ_ξ Bᵀ[ξ, i] g_ξ.
        return g0, g1 - g2 + g3, g1 + g2 - g0, -g3

    cols = []
    for k in range(4):
        row = dv.new_empty(b, th, w, c)
        spread(*patch(dv[k, 0], dv[k, 1], dv[k, 2], dv[k, 3]), row, dim=2)
        cols.append(row)
    dx = dv.new_empty(b, h, w, c)
    spread(*patch(*cols), dx, dim=1)
    return dx


def _output_transform(m: Tensor, b: int, h: int, w: int) -> Tensor:
    """M [16, T, O] -> y [B, H, W, O] (NHWC, contiguous): Aᵀ m A per tile, Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]."""
    o = m.shape[-1]
    th, tw = h // 2, w // 2
    m = m.view(4, 4, b, th, tw, o)
    s = (m[0] + m[1] + m[2], m[1] - m[2] - m[3])  # rows p = 0, 1: [4 (ν), b, th, tw, o]
    y = m.new_empty(b, th, 2, tw, 2, o)
    for p, sp in enumerate(s):
        torch.add(sp[0] + sp[1], sp[2], out=y[:, :, p, :, 0])
        torch.sub(sp[1] - sp[2], sp[3], out=y[:, :, p, :, 1])
    return y.view(b, h, w, o)


def _output_transform_grad(g: Tensor) -> Tensor:
    """The transpose of _output_transform: dy [B, H, W, O] -> dM [16, T, O]."""
    b, h, w, o = g.shape
    th, tw = h // 2, w // 2
    gt = g.view(b, th, 2, tw, 2, o)
    g0, g1 = gt[:, :, 0], gt[:, :, 1]  # [b, th, tw, 2, o]: the tiles' output rows
    rows = (g0, g0 + g1, g0 - g1, g1.neg())  # Σ_p Aᵀ[p, ξ] g_p
    dm = g.new_empty(4, 4, b, th, tw, o)
    for k, r in enumerate(rows):
        q0, q1 = r[:, :, :, 0], r[:, :, :, 1]
        dm[k, 0].copy_(q0)
        torch.add(q0, q1, out=dm[k, 1])
        torch.sub(q0, q1, out=dm[k, 2])
        torch.neg(q1, out=dm[k, 3])
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
    tensors in channels-last layout with even H and W of at least MIN_SIZE, autocast off. Otherwise nn.Conv2d's
    forward."""

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
            and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.is_autocast_enabled("cpu")
        )

    def forward(self, x: Tensor) -> Tensor:
        if self._qualifies(x):
            return winograd_conv3x3(x, self.weight, self.bias)
        return super().forward(x)
