"""imagen_core.convert: DeepFloyd IF stages from diffusers, checked against diffusers itself.

Small random-init IF-style UNet2DConditionModels of both stages are built offline, saved with save_pretrained, converted
with the command line, loaded with imagen_core.checkpoints.load_checkpoint, and compared with diffusers' forward
(the contract: time = t / num_train_timesteps, within 1e-4 in fp32). Every weight is perturbed first, so that no
zero-initialised or unit-initialised parameter could hide a wrong mapping.
"""

import json

import pytest
import torch

from imagen_core import convert
from imagen_core.checkpoints import load_checkpoint, read_stage_config

pytestmark = pytest.mark.slow

TEXT_DIM = 48  # the T5 width (4096 in IF): projected to cross_attention_dim
CROSS_DIM = 32


def if_unet_kwargs(*, stage: int) -> dict:
    """IF-I / IF-II's UNet2DConditionModel options at toy widths (IF-I-XL and IF-II-L set the same switches)."""
    kwargs = dict(
        sample_size=16,
        layers_per_block=1,
        block_out_channels=[32, 64],
        down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"],
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=["SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
        in_channels=3,
        out_channels=6,
        cross_attention_dim=CROSS_DIM,
        encoder_hid_dim=TEXT_DIM,
        attention_head_dim=16,
        addition_embed_type="text",
        addition_embed_type_num_heads=4,
        cross_attention_norm="group_norm",
        resnet_time_scale_shift="scale_shift",
        act_fn="gelu",
    )
    if stage == 2:
        kwargs.update(
            sample_size=32,
            layers_per_block=[1, 2],
            in_channels=6,
            class_embed_type="timestep",
            mid_block_scale_factor=1.414,
            resnet_out_scale_factor=1.414,
            resnet_skip_time_act=True,
            time_embedding_act_fn="gelu",
            time_embedding_dim=48,
        )
    return kwargs


def build_if_unet(stage: int, seed: int):
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import AttnAddedKVProcessor

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**if_unet_kwargs(stage=stage))
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    unet.set_attn_processor(AttnAddedKVProcessor())
    return unet.eval()


def if_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        thresholding=True,
        dynamic_thresholding_ratio=0.95,
        sample_max_value=1.5,
        prediction_type="epsilon",
        variance_type="learned_range",
    )


@pytest.fixture(scope="module")
def stage_one(tmp_path_factory):
    """(diffusers unet, converted checkpoint path) for IF-I, converted from a pipeline-shaped folder."""
    folder = tmp_path_factory.mktemp("if-stage-1")
    unet = build_if_unet(1, seed=0)
    unet.save_pretrained(folder / "unet")
    if_scheduler().save_pretrained(folder / "scheduler")
    out = folder / "if-i.safetensors"
    convert.main(["--from-diffusers", str(folder), "--out", str(out), "--text-encoder", "/models/t5"])
    return unet, out


@pytest.fixture(scope="module")
def stage_two(tmp_path_factory):
    """(diffusers unet, converted checkpoint path) for IF-II, converted from its unet folder alone."""
    folder = tmp_path_factory.mktemp("if-stage-2")
    unet = build_if_unet(2, seed=1)
    unet.save_pretrained(folder / "unet")
    out = folder / "if-ii.safetensors"
    convert.main(["--from-diffusers", str(folder / "unet"), "--out", str(out), "--lowres-size", "8"])
    return unet, out


def text_inputs(batch: int, length: int = 7, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, TEXT_DIM, generator=g), torch.ones(batch, length, dtype=torch.bool)


def test_converted_if_stage_one_equals_diffusers_unet(stage_one):
    unet, path = stage_one
    loaded = load_checkpoint(path, load_text_encoder=False)
    g = torch.Generator().manual_seed(3)
    x_t = torch.randn(3, 3, 16, 16, generator=g)
    steps = torch.tensor([999, 500, 3])
    text_embeds, text_mask = text_inputs(3)

    with torch.no_grad():
        want = unet(x_t, steps, encoder_hidden_states=text_embeds).sample
        got = loaded.unet(x_t, steps / 1000, text_embeds=text_embeds, text_mask=text_mask)

    assert got.shape == want.shape == (3, 6, 16, 16)
    assert want.abs().mean() > 0.1, "a degenerate reference output"
    assert (got - want).abs().max() < 1e-4


def test_converted_if_stage_two_equals_diffusers_unet_told_the_noise_level(stage_two):
    unet, path = stage_two
    loaded = load_checkpoint(path, load_text_encoder=False)
    g = torch.Generator().manual_seed(4)
    x_t = torch.randn(2, 3, 32, 32, generator=g)
    lowres = torch.randn(2, 3, 32, 32, generator=g)
    steps, noise_level = torch.tensor([700, 20]), torch.tensor([250, 0])
    text_embeds, text_mask = text_inputs(2)

    with torch.no_grad():
        want = unet(
            torch.cat([x_t, lowres], 1), steps, encoder_hidden_states=text_embeds, class_labels=noise_level
        ).sample
        got = loaded.unet(
            x_t,
            steps / 1000,
            text_embeds=text_embeds,
            text_mask=text_mask,
            lowres_cond_img=lowres,
            lowres_noise_level=noise_level / 1000,
        )
        other_level = loaded.unet(
            x_t,
            steps / 1000,
            text_embeds=text_embeds,
            text_mask=text_mask,
            lowres_cond_img=lowres,
            lowres_noise_level=torch.tensor([0.9, 0.9]),
        )

    assert got.shape == want.shape == (2, 6, 32, 32)
    assert (got - want).abs().max() < 1e-4
    assert (other_level - got).abs().max() > 1e-3, "the noise level must reach the network"


def test_converted_checkpoint_carries_if_stage_settings(stage_one, stage_two):
    first, second = read_stage_config(stage_one[1]), read_stage_config(stage_two[1])

    assert first.diffusion.schedule == second.diffusion.schedule == "squaredcos_cap_v2"
    assert first.diffusion.variance == "learned_range"
    assert first.sampler.sampler == "ancestral"
    assert (first.sampler.dynamic_threshold_percentile, first.sampler.dynamic_threshold_max) == (0.95, 1.5)
    assert first.text_encoder_name == "/models/t5" and first.text_padding == "max_length"
    assert first.null_text == "empty_prompt" and first.max_text_len == 77 and first.text_lowercase
    assert first.lowres_image_size is None
    assert (second.image_size, second.lowres_image_size, second.unet.lowres_cond) == (32, 8, True)
    assert second.unet.mid_residual_scale == pytest.approx(1 / 1.414)


def test_converter_refuses_a_unet_it_cannot_express(tmp_path):
    config = {**if_unet_kwargs(stage=1), "class_embeddings_concat": True}
    (tmp_path / "config.json").write_text(json.dumps(config))

    with pytest.raises(convert.ConversionError, match="class_embeddings_concat"):
        convert.convert_from_diffusers(tmp_path, tmp_path / "out.safetensors")


def test_imagen_core_sampling_loop_equals_diffusers_if_pipeline(stage_one):
    """The whole DDPM loop (learned-range variance, dynamic thresholding capped at 1.5, guidance on ε only) from the
    same starting noise and step noise: one generator per image on both sides."""
    from diffusers import IFPipeline

    from imagen_core.diffusion import GaussianDiffusion
    from imagen_core.imagen import generators_for, sample_stage, with_sampler

    unet, path = stage_one
    pipe = IFPipeline(
        tokenizer=None,
        text_encoder=None,
        unet=unet,
        scheduler=if_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    text_embeds, text_mask = text_inputs(2, seed=5)
    null_embeds, null_mask = text_inputs(1, seed=6)
    with torch.no_grad():
        want = pipe(
            prompt_embeds=text_embeds,
            negative_prompt_embeds=null_embeds.expand(2, -1, -1),
            num_inference_steps=50,
            guidance_scale=3.0,
            generator=generators_for([11, 12]),
            output_type="pt",
        ).images

    loaded = load_checkpoint(path, load_text_encoder=False)
    stage = with_sampler(loaded.stage, steps=50, cond_scale=3.0)
    got = sample_stage(
        loaded.unet,
        GaussianDiffusion(stage.diffusion),
        stage,
        text_embeds=text_embeds,
        text_mask=text_mask,
        generators=generators_for([11, 12]),
        null_text_embeds=null_embeds,
        null_text_mask=null_mask,
    )

    assert want.shape == got.shape == (2, 3, 16, 16)
    assert want.std() > 0.1
    assert (got - want.clamp(-1, 1)).abs().max() < 1e-4


def test_sample_command_draws_from_a_converted_if_stage_with_a_local_t5(stage_one, tmp_path):
    from PIL import Image
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    from imagen_core import sample

    torch.manual_seed(0)
    config = T5Config(vocab_size=384, d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=1, num_heads=4)
    T5EncoderModel(config).save_pretrained(tmp_path / "t5")
    ByT5Tokenizer().save_pretrained(tmp_path / "t5")
    out = tmp_path / "if.png"

    code = sample.main(
        [
            "--checkpoint",
            str(stage_one[1]),
            "--text-encoder",
            str(tmp_path / "t5"),
            "--prompt",
            "A red cube",
            "--num-images",
            "2",
            "--steps",
            "3",
            "--device",
            "cpu",
            "--out",
            str(out),
        ]
    )

    assert code == 0
    assert Image.open(out).size == (32, 16)


def test_converter_reads_per_level_lists_that_hold_one_value():
    config = {**if_unet_kwargs(stage=1), "only_cross_attention": [False, False], "attention_head_dim": [16, 16]}
    unet = convert.unet_config_from_diffusers(config)
    assert unet.head_dim == 16 and unet.use_self_attn

    with pytest.raises(convert.ConversionError, match="only_cross_attention"):
        convert.unet_config_from_diffusers({**config, "only_cross_attention": [False, True]})
