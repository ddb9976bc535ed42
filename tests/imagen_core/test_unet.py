"""imagen_core.unet: the call contract, text conditioning, the Efficient U-Net's layout and the paper's sizes."""

import dataclasses

import pytest
import torch

from imagen_core import config as C
from imagen_core.layers import Attention, ResBlock
from imagen_core.unet import EfficientUNet, UNet, build_unet, count_parameters, upsample_lowres

TEXT_DIM = C.TINY_T5_DIM

STANDARD = dataclasses.replace(C.TINY, kind="standard")
EFFICIENT_CROSS_ONLY = dataclasses.replace(C.TINY_EFFICIENT, use_self_attn=False)
EFFICIENT_BLOCK_COND = dataclasses.replace(
    C.TINY_EFFICIENT, cond_placement="block", efficient_attn_placement="res_block", text_proj_dim=24
)
TINY_CONFIGS = {
    "base": C.TINY,
    "standard": STANDARD,
    "efficient": C.TINY_EFFICIENT,
    "efficient_sr": C.TINY_SR,
    "efficient_cross_only": EFFICIENT_CROSS_ONLY,
    "efficient_block_cond": EFFICIENT_BLOCK_COND,
    "base_sr_add_skips_updown": dataclasses.replace(
        C.TINY, lowres_cond=True, skip_mode="add", resblock_updown=True, skip_scale_at="both"
    ),
    "efficient_transposed_avgpool_fourier": dataclasses.replace(
        C.TINY_EFFICIENT,
        upsample_mode="transposed",
        downsample_mode="avgpool",
        time_embedding="fourier",
        use_mid_block=True,
    ),
    "efficient_pixel_shuffle_add_skips": dataclasses.replace(
        C.TINY_EFFICIENT, upsample_mode="pixel_shuffle", skip_mode="add", skip_scale_at="residual"
    ),
}


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny networks gain nothing from threads, and on a shared CPU two threads per process oversubscribe it.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _trained_looking(unet: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give the zero-initialised output layers random weights, so every path reaches the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
    return unet.eval()


def _inputs(config, batch=2, size=None, seed=0, text_len=5):
    generator = torch.Generator().manual_seed(seed)
    size = size or config.image_size
    x_t = torch.randn(batch, config.in_channels, size, size, generator=generator)
    time = torch.rand(batch, generator=generator)
    text_embeds = torch.randn(batch, text_len, TEXT_DIM, generator=generator)
    text_mask = torch.ones(batch, text_len, dtype=torch.bool)
    extra = {}
    if config.lowres_cond:
        lowres = torch.randn(batch, config.in_channels, size // 2, size // 2, generator=generator)
        extra = {"lowres_cond_img": upsample_lowres(lowres, size), "lowres_noise_level": torch.rand(batch)}
    return x_t, time, text_embeds, text_mask, extra


@pytest.mark.parametrize("name", sorted(TINY_CONFIGS))
def test_unet_output_has_the_shape_of_x_t(name):
    config = TINY_CONFIGS[name]
    unet = build_unet(config)
    x_t, time, text_embeds, text_mask, extra = _inputs(config)
    out = unet(x_t, time, text_embeds=text_embeds, text_mask=text_mask, **extra)
    assert out.shape == x_t.shape
    assert torch.isfinite(out).all()


def test_build_unet_picks_the_layout_from_the_kind():
    assert type(build_unet(C.TINY)) is UNet
    assert type(build_unet(STANDARD)) is UNet
    assert type(build_unet(C.TINY_EFFICIENT)) is EfficientUNet


def test_fresh_unet_predicts_zero_because_output_layers_start_at_zero():
    unet = build_unet(C.TINY_SR)
    x_t, time, text_embeds, text_mask, extra = _inputs(C.TINY_SR)
    out = unet(x_t, time, text_embeds=text_embeds, text_mask=text_mask, **extra)
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("name", ["efficient", "efficient_sr"])
def test_efficient_unet_is_fully_convolutional_so_it_runs_on_larger_crops(name):
    config = TINY_CONFIGS[name]
    unet = _trained_looking(build_unet(config))
    x_t, time, text_embeds, text_mask, extra = _inputs(config, size=2 * config.image_size)
    assert unet(x_t, time, text_embeds=text_embeds, text_mask=text_mask, **extra).shape == x_t.shape


@pytest.mark.parametrize("name", ["base", "efficient_sr", "efficient_cross_only", "efficient_block_cond"])
def test_padding_tokens_do_not_change_the_output(name):
    config = TINY_CONFIGS[name]
    unet = _trained_looking(build_unet(config))
    x_t, time, text_embeds, _, extra = _inputs(config, text_len=4)
    short_mask = torch.ones(2, 4, dtype=torch.bool)
    # The same prompts padded to 9 tokens with garbage that a missing mask would let through.
    padded = torch.cat([text_embeds, 5.0 * torch.randn(2, 5, TEXT_DIM)], dim=1)
    padded_mask = torch.cat([short_mask, torch.zeros(2, 5, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        short = unet(x_t, time, text_embeds=text_embeds, text_mask=short_mask, **extra)
        long = unet(x_t, time, text_embeds=padded, text_mask=padded_mask, **extra)
        unmasked = unet(x_t, time, text_embeds=padded, text_mask=None, **extra)
    torch.testing.assert_close(long, short, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(unmasked, short, atol=1e-3)


@pytest.mark.parametrize("name", ["base", "standard", "efficient_sr", "efficient_cross_only"])
def test_text_changes_the_output(name):
    config = TINY_CONFIGS[name]
    unet = _trained_looking(build_unet(config))
    x_t, time, text_embeds, text_mask, extra = _inputs(config)
    other_text = torch.randn_like(text_embeds)
    with torch.no_grad():
        a = unet(x_t, time, text_embeds=text_embeds, text_mask=text_mask, **extra)
        b = unet(x_t, time, text_embeds=other_text, text_mask=text_mask, **extra)
        zeroed = unet(x_t, time, text_embeds=torch.zeros_like(text_embeds), text_mask=text_mask, **extra)
        none = unet(x_t, time, text_embeds=None, text_mask=None, **extra)
    assert not torch.allclose(a, b, atol=1e-3)
    assert not torch.allclose(a, zeroed, atol=1e-3)
    assert torch.isfinite(none).all()


def test_text_reaches_the_output_through_attention_pooling_alone():
    config = dataclasses.replace(C.TINY, use_text_cross_attn=False)
    unet = _trained_looking(build_unet(config))
    assert not any(m.text_to_kv is not None for m in unet.modules() if isinstance(m, Attention))
    x_t, time, text_embeds, text_mask, _ = _inputs(config)
    with torch.no_grad():
        a = unet(x_t, time, text_embeds=text_embeds, text_mask=text_mask)
        b = unet(x_t, time, text_embeds=torch.randn_like(text_embeds), text_mask=text_mask)
    assert not torch.allclose(a, b, atol=1e-3)


def test_fully_masked_text_gives_a_finite_output_without_self_attention():
    config = EFFICIENT_CROSS_ONLY
    unet = _trained_looking(build_unet(config))
    x_t, time, text_embeds, _, _ = _inputs(config)
    mask = torch.tensor([[True] * 5, [False] * 5])
    with torch.no_grad():
        out = unet(x_t, time, text_embeds=text_embeds, text_mask=mask)
    assert torch.isfinite(out).all()


def test_lowres_conditioning_image_and_noise_level_both_change_the_output():
    config = C.TINY_SR
    unet = _trained_looking(build_unet(config))
    x_t, time, text_embeds, text_mask, extra = _inputs(config)
    with torch.no_grad():
        ref = unet(x_t, time, text_embeds=text_embeds, text_mask=text_mask, **extra)
        other_img = dict(extra, lowres_cond_img=torch.randn_like(extra["lowres_cond_img"]))
        by_image = unet(x_t, time, text_embeds=text_embeds, text_mask=text_mask, **other_img)
        other_level = dict(extra, lowres_noise_level=1.0 - extra["lowres_noise_level"])
        by_level = unet(x_t, time, text_embeds=text_embeds, text_mask=text_mask, **other_level)
    assert not torch.allclose(ref, by_image, atol=1e-3)
    assert not torch.allclose(ref, by_level, atol=1e-3)


def test_sr_unet_without_lowres_cond_img_says_what_is_missing():
    unet = build_unet(C.TINY_SR)
    x_t, time, text_embeds, text_mask, _ = _inputs(C.TINY_SR)
    with pytest.raises(ValueError, match="needs lowres_cond_img"):
        unet(x_t, time, text_embeds=text_embeds, text_mask=text_mask)


def test_unet_rejects_text_of_the_wrong_width():
    unet = build_unet(C.TINY)
    x_t, time, _, _, _ = _inputs(C.TINY)
    with pytest.raises(ValueError, match=r"text_embeds must be \[B, L, 32\]"):
        unet(x_t, time, text_embeds=torch.randn(2, 5, 7), text_mask=None)


def test_unet_rejects_a_size_it_cannot_halve_per_level():
    unet = build_unet(C.TINY_EFFICIENT)
    with pytest.raises(ValueError, match=r"divisible by 4, got 18×18"):
        unet(torch.randn(1, 3, 18, 18), torch.rand(1), text_embeds=None, text_mask=None)


def _res_block_input_sizes(unet, config, size):
    sizes = []
    hooks = [
        m.register_forward_hook(lambda mod, args, out: sizes.append(args[0].shape[-1]))
        for m in unet.modules()
        if isinstance(m, ResBlock)
    ]
    x_t, time, text_embeds, text_mask, extra = _inputs(config, size=size)
    with torch.no_grad():
        unet(x_t, time, text_embeds=text_embeds, text_mask=text_mask, **extra)
    for hook in hooks:
        hook.remove()
    return sizes


def test_efficient_unet_runs_no_residual_block_at_full_resolution():
    # DBlocks downsample before their convolutions and UBlocks upsample after theirs (App. B.1).
    efficient = _res_block_input_sizes(build_unet(C.TINY_EFFICIENT), C.TINY_EFFICIENT, 16)
    base = _res_block_input_sizes(build_unet(C.TINY), C.TINY, 16)
    assert max(efficient) == 8
    assert max(base) == 16


def test_efficient_unet_puts_more_residual_blocks_and_all_attention_at_the_lowest_resolution():
    config = C.PAPER_SR_256
    with torch.device("meta"):
        unet = build_unet(config)
    blocks_per_level = [len(d.blocks) for d in unet.dblocks]
    assert blocks_per_level == [2, 4, 8, 8]
    attention_widths = {m.to_q.in_features for m in unet.modules() if isinstance(m, Attention)}
    assert attention_widths == {1024}


def test_base_unet_attends_at_32_16_and_8():
    with torch.device("meta"):
        unet = build_unet(C.PAPER_BASE_64)
    attention_widths = {m.to_q.in_features for m in unet.modules() if isinstance(m, Attention)}
    assert attention_widths == {1024, 1536, 2048}  # levels 2, 3, 4 run at 32, 16, 8


@pytest.mark.parametrize(
    ("name", "target"),
    [("PAPER_BASE_64", 2.0e9), ("PAPER_SR_256_600M", 600e6), ("PAPER_SR_1024", 400e6)],
)
def test_paper_presets_have_the_papers_parameter_counts_within_ten_percent(name, target):
    with torch.device("meta"):
        unet = build_unet(getattr(C, name))
    count = count_parameters(unet)
    print(f"{name}: {count / 1e6:.1f}M parameters (paper: {target / 1e6:.0f}M)")
    assert abs(count - target) / target < 0.10


def test_paper_faithful_sr_256_has_one_attention_layer_per_lowest_block_and_452_6m_parameters():
    with torch.device("meta"):
        unet = build_unet(C.PAPER_SR_256)
    attention_layers = [m for m in unet.modules() if isinstance(m, Attention)]
    assert len(attention_layers) == 2  # end of the 1024-channel DBlock and of its UBlock (Fig. A.29/A.30)
    assert round(count_parameters(unet) / 1e5) == 4526


def test_base_preset_uses_64_channels_per_head():
    with torch.device("meta"):
        unet = build_unet(C.PAPER_BASE_64)
    heads = {m.to_q.in_features: m.num_heads for m in unet.modules() if isinstance(m, Attention)}
    assert heads == {1024: 16, 1536: 24, 2048: 32}


def test_residual_skip_scaling_changes_the_networks_output_with_the_same_weights():
    plain = dataclasses.replace(C.TINY, skip_scale_at="none")
    residual = dataclasses.replace(C.TINY, skip_scale_at="residual")
    torch.manual_seed(0)
    a = build_unet(plain)
    b = build_unet(residual)
    for p in a.parameters():
        torch.nn.init.normal_(p, std=0.1)
    b.load_state_dict(a.state_dict())
    x_t, time, text_embeds, text_mask, extra = _inputs(plain, batch=2, seed=3)
    with torch.no_grad():
        out_a = a(x_t, time, text_embeds=text_embeds, text_mask=text_mask, **extra)
        out_b = b(x_t, time, text_embeds=text_embeds, text_mask=text_mask, **extra)
    assert not torch.allclose(out_a, out_b, atol=1e-3)


@pytest.mark.parametrize("name", ["base", "efficient_sr"])
def test_a_few_adam_steps_overfit_a_fixed_batch(name):
    torch.manual_seed(0)
    config = TINY_CONFIGS[name]
    unet = build_unet(config)
    x_t, time, text_embeds, text_mask, extra = _inputs(config, batch=4, seed=1)
    target = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(2))
    optimizer = torch.optim.Adam(unet.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = (unet(x_t, time, text_embeds=text_embeds, text_mask=text_mask, **extra) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("name", ["base", "efficient_sr"])
def test_channels_last_activations_compute_the_same_function(name):
    config = TINY_CONFIGS[name]
    torch.manual_seed(0)
    plain = build_unet(config)
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.1)
    fast = build_unet(dataclasses.replace(config, channels_last=True))
    fast.load_state_dict(plain.state_dict())
    x_t, time, text_embeds, text_mask, extra = _inputs(config, batch=2, seed=4)
    with torch.no_grad():
        want = plain(x_t, time, text_embeds=text_embeds, text_mask=text_mask, **extra)
        got = fast(x_t, time, text_embeds=text_embeds, text_mask=text_mask, **extra)
    assert got.is_contiguous()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["base", "efficient_sr"])
def test_channels_last_network_trains_the_same_and_keeps_its_weights_channels_last(name):
    """channels_last also stores the convolution weights channels-last (no per-call weight conversion); loading a
    state dict keeps that layout, and one training step's gradients are those of the plain network."""
    config = TINY_CONFIGS[name]
    torch.manual_seed(0)
    plain = build_unet(config)
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.1)
    fast = build_unet(dataclasses.replace(config, channels_last=True))
    fast.load_state_dict(plain.state_dict())
    conv_weights = [m.weight for m in fast.modules() if isinstance(m, torch.nn.Conv2d)]
    assert conv_weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights)
    x_t, time, text_embeds, text_mask, extra = _inputs(config, batch=2, seed=5)
    target = torch.randn_like(x_t[:, : config.out_channels])
    for net in (plain, fast):
        out = net(x_t, time, text_embeds=text_embeds, text_mask=text_mask, **extra)
        (out - target).pow(2).mean().backward()
    fast_params = dict(fast.named_parameters())
    for key, p in plain.named_parameters():
        torch.testing.assert_close(fast_params[key].grad, p.grad, atol=1e-5, rtol=1e-4, msg=key)
