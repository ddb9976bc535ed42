"""imagen_core.winograd: Winograd F(2×2, 3×3) computes the 3×3 convolution and its gradients, runs only where it
qualifies, and a U-Net with cpu_winograd is the same network as without."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from imagen_core import config as C
from imagen_core.unet import build_unet
from imagen_core.winograd import WinogradConv2d, winograd_conv3x3

CL = torch.channels_last


def _direct_and_winograd(x, weight, bias, grad):
    results = []
    for fn in (lambda a, w, b: F.conv2d(a, w, b, padding=1), winograd_conv3x3):
        leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (x, weight, bias)]
        out = fn(*leaves)
        out.backward(grad)
        results.append((out.detach(), *(t.grad if t is not None else None for t in leaves)))
    return results


@pytest.mark.parametrize(
    ("batch", "c_in", "c_out", "h", "w", "bias"),
    [(2, 5, 7, 8, 8, True), (1, 3, 4, 4, 10, False), (3, 16, 9, 6, 2, True), (2, 130, 129, 12, 8, True)],
)
def test_forward_and_gradients_equal_the_direct_convolution(batch, c_in, c_out, h, w, bias):
    gen = torch.Generator().manual_seed(batch * 100 + c_in)
    x = torch.randn(batch, c_in, h, w, generator=gen).contiguous(memory_format=CL)
    weight = torch.randn(c_out, c_in, 3, 3, generator=gen).contiguous(memory_format=CL)
    b = torch.randn(c_out, generator=gen) if bias else None
    grad = torch.randn(batch, c_out, h, w, generator=gen).contiguous(memory_format=CL)
    (want, *want_grads), (got, *got_grads) = _direct_and_winograd(x, weight, b, grad)
    assert got.is_contiguous(memory_format=CL)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    for name, g_want, g_got in zip(("x", "weight", "bias"), want_grads, got_grads, strict=True):
        if g_want is None:
            assert g_got is None
            continue
        assert g_got.shape == g_want.shape, name
        torch.testing.assert_close(g_got, g_want, atol=1e-4, rtol=1e-4, msg=name)
    assert got_grads[1].is_contiguous(memory_format=CL)  # the weight gradient in the weight's layout


def test_backward_is_the_adjoint_of_forward_in_float64():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 6, generator=gen, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_()
    weight = torch.randn(2, 3, 3, 3, generator=gen, dtype=torch.float64).requires_grad_()
    bias = torch.randn(2, generator=gen, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(winograd_conv3x3, (x, weight, bias))


def test_a_contiguous_weight_gets_a_contiguous_gradient():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 6, 6, generator=gen).contiguous(memory_format=CL)
    weight = torch.randn(5, 4, 3, 3, generator=gen).requires_grad_()
    winograd_conv3x3(x, weight, None).sum().backward()
    assert weight.grad.is_contiguous()
    want = torch.autograd.grad(F.conv2d(x, weight, None, padding=1).sum(), weight)[0]
    torch.testing.assert_close(weight.grad, want, atol=1e-4, rtol=1e-4)


def _ran_winograd(module, x) -> bool:
    out = module(x)
    return type(out.grad_fn).__name__.startswith("_WinogradConv3x3")


def test_the_layer_runs_winograd_only_where_it_qualifies():
    wide = WinogradConv2d(128, 128, 3, padding=1).to(memory_format=CL)
    x = torch.randn(1, 128, 8, 8).contiguous(memory_format=CL)
    assert not _ran_winograd(wide, x)  # the flag is off by default
    wide.winograd = True
    assert _ran_winograd(wide, x)
    assert not _ran_winograd(wide, x.contiguous())  # NCHW activations
    assert not _ran_winograd(wide, torch.randn(1, 128, 9, 8).contiguous(memory_format=CL))  # odd height
    assert not _ran_winograd(wide, torch.randn(1, 128, 6, 6).contiguous(memory_format=CL))  # too few tiles
    assert not _ran_winograd(wide, torch.randn(1, 128, 66, 64).contiguous(memory_format=CL))  # too large
    assert _ran_winograd(wide, torch.randn(1, 128, 64, 64).contiguous(memory_format=CL))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not _ran_winograd(wide, x)
    narrow = WinogradConv2d(64, 128, 3, padding=1).to(memory_format=CL)
    narrow.winograd = True
    assert not _ran_winograd(narrow, torch.randn(1, 64, 8, 8).contiguous(memory_format=CL))
    strided = WinogradConv2d(128, 128, 3, stride=2, padding=1).to(memory_format=CL)
    strided.winograd = True
    assert not _ran_winograd(strided, x)
    # Whichever path runs, the function is the convolution's.
    wide.winograd = False
    want = wide(x)
    wide.winograd = True
    torch.testing.assert_close(wide(x), want, atol=1e-4, rtol=1e-4)


WIDE_SR = dataclasses.replace(
    C.TINY_EFFICIENT,
    image_size=32,
    dim=64,
    channel_mults=(2, 4),
    num_res_blocks=(1, 2),
    lowres_cond=True,
    channels_last=True,
    upsample_mode="pixel_shuffle",
)


def test_a_unet_with_cpu_winograd_is_the_same_network():
    """Same state dict, same output, same gradients (within fp32 rounding), and the wide blocks do take the Winograd
    path (128 and 256 channels at 16×16 and 8×8)."""
    torch.manual_seed(0)
    plain = build_unet(WIDE_SR)
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.05)
    fast = build_unet(dataclasses.replace(WIDE_SR, cpu_winograd=True))
    fast.load_state_dict(plain.state_dict())
    assert fast.state_dict().keys() == plain.state_dict().keys()
    convs = [m for m in fast.modules() if isinstance(m, WinogradConv2d)]
    assert convs and all(m.winograd for m in convs)
    calls = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append(m._qualifies(i[0]))) for m in convs]
    gen = torch.Generator().manual_seed(3)
    x_t = torch.randn(2, 3, 32, 32, generator=gen)
    time = torch.rand(2, generator=gen)
    text = torch.randn(2, 5, WIDE_SR.text_embed_dim, generator=gen)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    lowres = torch.randn(2, 3, 32, 32, generator=gen)
    target = torch.randn(2, 3, 32, 32, generator=gen)
    outs = []
    for net in (plain, fast):
        out = net(x_t, time, text_embeds=text, text_mask=mask, lowres_cond_img=lowres)
        (out - target).pow(2).mean().backward()
        outs.append(out)
    for h in hooks:
        h.remove()
    assert sum(calls) >= 4
    torch.testing.assert_close(outs[1], outs[0], atol=1e-4, rtol=1e-4)
    fast_params = dict(fast.named_parameters())
    for key, p in plain.named_parameters():
        torch.testing.assert_close(fast_params[key].grad, p.grad, atol=1e-4, rtol=1e-3, msg=key)


def test_cpu_winograd_without_channels_last_changes_nothing():
    net = build_unet(dataclasses.replace(WIDE_SR, channels_last=False, cpu_winograd=True))
    assert not any(m.winograd for m in net.modules() if isinstance(m, WinogradConv2d))
