"""Paper-fidelity and IF options: the discrete cosine schedule, Improved-DDPM variance interpolation, capped dynamic
thresholding, cosine learning-rate decay, and T5 loaded from a local folder with IF's padding."""

import dataclasses
import math

import pytest
import torch

from imagen_core import config as C
from imagen_core.diffusion import GaussianDiffusion, squaredcos_cap_v2_alphas_cumprod
from imagen_core.sampling import Denoised, discrete_timesteps, dynamic_threshold, sample_ancestral
from imagen_core.text_encoder import TINY_T5_KWARGS, TextEncoder
from imagen_core.training import lr_lambda


def test_squaredcos_cap_v2_matches_diffusers_ddpm_scheduler():
    from diffusers import DDPMScheduler

    want = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod
    assert torch.equal(squaredcos_cap_v2_alphas_cumprod(1000), want)


def test_discrete_schedule_gives_diffusers_alphas_at_integer_steps():
    from diffusers import DDPMScheduler

    alphas_cumprod = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod
    diffusion = GaussianDiffusion(C.DiffusionConfig(schedule="squaredcos_cap_v2"))
    steps = torch.tensor([0, 1, 250, 500, 998, 999])
    alpha, _ = diffusion.alpha_sigma(steps / 1000)
    torch.testing.assert_close(alpha**2, alphas_cumprod[steps], rtol=1e-5, atol=0)


def test_discrete_schedule_trains_on_whole_steps():
    diffusion = GaussianDiffusion(C.DiffusionConfig(schedule="squaredcos_cap_v2"))
    times = diffusion.sample_times(64, device="cpu", generator=torch.Generator().manual_seed(0))
    assert ((times * 1000) - (times * 1000).round()).abs().max() < 1e-3
    assert len(set((times * 1000).round().tolist())) > 32


def test_discrete_timesteps_use_diffusers_leading_spacing():
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2")
    scheduler.set_timesteps(7)
    times = discrete_timesteps(7, 1000)
    assert torch.equal((times[:-1] * 1000).round().long(), scheduler.timesteps)
    assert times[-1] == 0


def test_dynamic_threshold_caps_s_at_the_maximum():
    x = torch.full((1, 1, 2, 2), 3.0)
    assert torch.equal(dynamic_threshold(x, 0.95), torch.ones_like(x))  # s = 3: the whole range kept
    assert torch.allclose(dynamic_threshold(x, 0.95, max_value=1.5), torch.ones_like(x))  # clipped to 1.5, / 1.5
    y = torch.tensor([[[[0.5, 3.0], [-3.0, 1.2]]]])
    assert torch.allclose(dynamic_threshold(y, 0.95, max_value=1.5), y.clamp(-1.5, 1.5) / 1.5)


def _one_step_std(gamma=0.0, var_values=None):
    """The noise std of one ancestral step, read back by giving a denoiser that returns a fixed x̂₀."""
    diffusion = GaussianDiffusion(C.DiffusionConfig(schedule="squaredcos_cap_v2"))
    x = torch.zeros(1, 1, 64, 64)

    def denoiser(x_t, t):
        x0 = torch.zeros_like(x_t)
        return x0 if var_values is None else Denoised(x0, torch.full_like(x_t, var_values))

    times = torch.tensor([0.5, 0.4, 0.0])
    seen = []
    sample_ancestral(
        denoiser,
        x,
        times,
        log_snr=diffusion.log_snr,
        generators=torch.Generator().manual_seed(0),
        callback=lambda info: seen.append(info["x"]),
        gamma=gamma,
    )
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    return (seen[0] / noise).mean().item(), diffusion


def test_ancestral_variance_interpolates_between_posterior_and_beta():
    posterior_std, diffusion = _one_step_std(gamma=0.0)
    beta_std, _ = _one_step_std(gamma=1.0)
    learned_top, _ = _one_step_std(var_values=1.0)
    learned_half, _ = _one_step_std(var_values=0.0)
    a_t = diffusion.alpha_sigma(torch.tensor(0.5))[0] ** 2
    a_s = diffusion.alpha_sigma(torch.tensor(0.4))[0] ** 2
    beta = 1 - a_t / a_s
    posterior = (1 - a_s) / (1 - a_t) * beta
    assert posterior_std == pytest.approx(posterior.sqrt().item(), rel=1e-4)
    assert beta_std == pytest.approx(beta.sqrt().item(), rel=1e-4)
    assert learned_top == pytest.approx(beta_std, rel=1e-5)
    assert learned_half == pytest.approx(math.sqrt(posterior_std * beta_std), rel=1e-4)


def test_cosine_learning_rate_decays_to_the_floor_after_warmup():
    training = C.TrainingConfig(warmup_steps=10, num_steps=110, lr_schedule="cosine", lr_min_ratio=0.1)
    schedule = lr_lambda(training)
    assert schedule(4) == pytest.approx(0.5)
    assert schedule(10) == pytest.approx(1.0)
    assert schedule(60) == pytest.approx(0.55)
    assert schedule(110) == pytest.approx(0.1) and schedule(500) == pytest.approx(0.1)
    assert lr_lambda(dataclasses.replace(training, lr_schedule="constant"))(60) == 1.0


def test_training_config_rejects_an_unknown_lr_schedule():
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'"):
        C.TrainingConfig(lr_schedule="linear")


@pytest.fixture(scope="module")
def local_t5(tmp_path_factory):
    """A tiny random T5 and its tokenizer saved to a folder, as a user's local copy of t5-v1_1-xxl would be."""
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    folder = tmp_path_factory.mktemp("t5")
    torch.manual_seed(0)
    T5EncoderModel(T5Config(**TINY_T5_KWARGS)).save_pretrained(folder)
    ByT5Tokenizer().save_pretrained(folder)
    return folder


def test_text_encoder_loads_a_local_t5_folder_and_pads_like_if(local_t5):
    longest = TextEncoder.from_pretrained(local_t5, max_length=16)
    padded = TextEncoder.from_pretrained(local_t5, max_length=16, padding="max_length")

    embeds, mask = longest.encode(["a red cube", "hi"])
    if_embeds, if_mask = padded.encode(["a red cube", "hi"])

    assert embeds.shape == (2, 11, 32) and not mask[1].all()
    assert if_embeds.shape == (2, 16, 32) and if_mask.all()
    assert if_embeds[1, 5:].abs().sum() > 0, "IF keeps T5's outputs at padding positions"
    torch.testing.assert_close(if_embeds[1, :3], embeds[1, :3], atol=1e-5, rtol=1e-5)


def test_cached_max_length_encodings_come_back_whole(local_t5, tmp_path):
    encoder = TextEncoder.from_pretrained(local_t5, max_length=16, padding="max_length")
    cached = TextEncoder.from_pretrained(local_t5, max_length=16, padding="max_length", cache_dir=tmp_path)
    first = cached.encode(["a red cube"])
    again = cached.encode(["a red cube"])
    direct = encoder.encode(["a red cube"])
    assert torch.equal(first[0], again[0]) and again[1].all()
    torch.testing.assert_close(again[0], direct[0])
