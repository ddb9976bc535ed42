"""imagen_core.layers.Upsample: the channels-last pixel-shuffle path is the same function as conv + PixelShuffle."""

import torch

from imagen_core.layers import Upsample

CL = torch.channels_last


def test_pixel_shuffle_on_channels_last_activations_equals_conv_then_pixel_shuffle():
    torch.manual_seed(0)
    up = Upsample(6, 5, mode="pixel_shuffle")
    for p in up.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(2, 6, 4, 3)
    grad = torch.randn(2, 5, 8, 6)
    results = []
    for layout in (torch.contiguous_format, CL):
        up.zero_grad()
        xi = x.clone(memory_format=layout).requires_grad_()
        out = up(xi)
        out.backward(grad)
        results.append((out.detach(), xi.grad, up.conv[0].weight.grad.clone(), up.conv[0].bias.grad.clone()))
    (want, *want_grads), (got, *got_grads) = results
    # The reference is what PixelShuffle computes from the plain convolution.
    torch.testing.assert_close(want, torch.nn.functional.pixel_shuffle(up.conv[0](x), 2))
    assert got.shape == (2, 5, 8, 6) and got.is_contiguous(memory_format=CL)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for g_got, g_want in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g_got, g_want, atol=1e-5, rtol=1e-5)
