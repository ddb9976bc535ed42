"""Samplers, classifier-free guidance and thresholding (Imagen, arXiv 2205.11487, Sec. 2.3 and App. E).

In the manner of k-diffusion's ``sampling.py``, every sampler is a function over one tiny callable contract,

    denoiser(x_t: Tensor[B,C,H,W], t: Tensor[B]) -> x̂_start: Tensor[B,C,H,W]

(a learned-variance network's denoiser returns ``Denoised(x0, var_values)`` instead; the ancestral sampler uses its
``var_values``, the others read ``x0`` alone)

plus the schedule's ``log_snr(t)``; the network, the text, guidance and thresholding are wrapped around the
network beforehand (``model_denoiser``), so a sampler knows nothing about them. Each sampler calls
``callback({"i", "t", "x", "denoised"})`` after every step; that is how a worker reports progress.

Randomness comes only from explicit generators: pass one ``torch.Generator`` per image (``generators[i]`` drives
row i alone), and image i is the same whatever batch it is drawn in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from imagen_core.diffusion import (
    DenoisingNetwork,
    GaussianDiffusion,
    alpha_sigma,
    null_text,
    randn_like_per_sample,
    right_pad_dims_to,
)


class Denoised(NamedTuple):
    """A learned-variance denoiser's output: x̂₀ [B,C,H,W] and the network's variance channels v ∈ [−1, 1]
    [B,C,H,W] (Improved DDPM, Eq. 15: log Σ = v' log β + (1 − v') log β̃ with v' = (v + 1)/2)."""

    x0: Tensor
    var_values: Tensor


def _split_denoised(out: Tensor | Denoised) -> tuple[Tensor, Tensor | None]:
    if isinstance(out, Denoised):
        return out.x0, out.var_values
    return out, None


Denoiser = Callable[[Tensor, Tensor], Tensor | Denoised]
LogSnr = Callable[[Tensor], Tensor]
Callback = Callable[[dict[str, Any]], None]
Generators = Sequence[torch.Generator] | torch.Generator | None
GuidanceMode = Literal["batched", "separate"]


# ---- Timesteps ----


def get_timesteps(steps: int, *, t_start: float = 1.0, t_end: float = 0.0, device="cpu") -> Tensor:
    """``steps + 1`` times evenly spaced from ``t_start`` down to ``t_end`` (continuous-time DDIM spacing)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.linspace(t_start, t_end, steps + 1, device=device)


def discrete_timesteps(steps: int, num_train_timesteps: int, *, device="cpu") -> Tensor:
    """``steps + 1`` times for a discrete schedule, diffusers' "leading" spacing: steps i·(T // steps) for
    i = steps−1 … 0, divided by T, then a final 0 (the last step returns x̂₀, as DDPM's step at t = 0 does)."""
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps must be in [1, {num_train_timesteps}], got {steps}")
    ratio = num_train_timesteps // steps
    indices = torch.arange(steps - 1, -1, -1, dtype=torch.float64) * ratio
    times = torch.cat([indices / num_train_timesteps, torch.zeros(1, dtype=torch.float64)])
    return times.float().to(device)


def noise_like(shape: Sequence[int], generators: Generators, *, device="cpu", dtype=torch.float32) -> Tensor:
    """The starting noise x_1 ~ N(0, I), one row per generator when given a list."""
    return randn_like_per_sample(torch.empty(tuple(shape), device=device, dtype=dtype), generators)


# ---- Thresholding (Sec. 2.3) ----


def quantile_per_sample(x: Tensor, q: float) -> Tensor:
    """The q-quantile of each row of ``x`` [B,N] with linear interpolation, as ``torch.quantile`` computes it.

    Uses ``topk`` on the upper tail rather than ``torch.quantile``, which refuses inputs over 2^24 elements (a
    batch of 1024×1024 images) and sorts the whole row.
    """
    n = x.shape[1]
    pos = q * (n - 1)
    lo = math.floor(pos)
    frac = pos - lo
    k = n - lo
    top = x.topk(min(k, n), dim=1, largest=True, sorted=True).values
    low_value = top[:, k - 1]
    if frac == 0 or k < 2:
        return low_value
    return low_value + frac * (top[:, k - 2] - low_value)


def dynamic_threshold(x_start: Tensor, percentile: float = 0.995, max_value: float | None = None) -> Tensor:
    """Dynamic thresholding: s = percentile(|x̂₀|, p) per sample; s = max(s, 1); clip to [−s, s]; divide by s.

    Sec. 2.3: "it pushes saturated pixels (those near −1 and 1) inwards, thereby actively preventing pixels from
    saturation at each step." ``max_value`` also caps s (diffusers' sample_max_value; IF uses 1.5).
    """
    flat = x_start.float().abs().flatten(1)
    s = quantile_per_sample(flat, percentile).clamp(min=1.0, max=max_value)
    s = right_pad_dims_to(x_start, s)
    return x_start.clamp(-s, s) / s


def static_threshold(x_start: Tensor) -> Tensor:
    """Static thresholding: clip x̂₀ to [−1, 1] (the baseline of Sec. 2.3)."""
    return x_start.clamp(-1.0, 1.0)


def thresholded(
    denoiser: Denoiser, kind: str, *, percentile: float = 0.995, max_value: float | None = None
) -> Denoiser:
    """Wrap a denoiser so that its x̂₀ is thresholded: ``kind`` is "dynamic", "static" or "none"."""
    if kind == "none":
        return denoiser
    if kind == "static":
        op = static_threshold
    elif kind == "dynamic":

        def op(x0: Tensor) -> Tensor:
            return dynamic_threshold(x0, percentile, max_value)

    else:
        raise ValueError(f"unknown thresholding {kind!r}; choose 'dynamic', 'static' or 'none'")

    def wrapped(x_t: Tensor, t: Tensor) -> Tensor | Denoised:
        out = denoiser(x_t, t)
        if isinstance(out, Denoised):
            return Denoised(op(out.x0), out.var_values)
        return op(out)

    return wrapped


# ---- Classifier-free guidance (Sec. 2.3) ----


def classifier_free_guidance(
    model: DenoisingNetwork,
    *,
    text_embeds: Tensor | None,
    text_mask: Tensor | None,
    cond_scale: float | None,
    mode: GuidanceMode = "batched",
    lowres_cond_img: Tensor | None = None,
    lowres_noise_level: Tensor | None = None,
    null_text_embeds: Tensor | None = None,
    null_text_mask: Tensor | None = None,
) -> Callable[[Tensor, Tensor], Tensor]:
    """The guided network output: ε̃(z, c) = w·ε(z, c) + (1 − w)·ε(z) with w = ``cond_scale``.

    ``mode="batched"`` runs the conditional and unconditional passes as ONE forward of 2B; "separate" runs two
    forwards of B (the baseline of bench/sampling.py). ``cond_scale=None`` runs the conditional model alone.
    The unconditional input is ``null_text``: the embeddings zeroed, as in training, unless ``null_text_embeds``
    [1 or B, L', D] is given (IF: the encoding of the empty prompt). A learned-variance network's extra channels
    are not guided: the conditional pass's are kept (as diffusers' IFPipeline does).
    """
    lowres = dict(lowres_cond_img=lowres_cond_img, lowres_noise_level=lowres_noise_level)

    def conditional(x_t: Tensor, t: Tensor) -> Tensor:
        return model(x_t, t, text_embeds=text_embeds, text_mask=text_mask, **lowres)

    if cond_scale is None or text_embeds is None:
        # Without text there is nothing to guide towards: an unconditional network is sampled as it is.
        return conditional
    if null_text_embeds is None:
        null_embeds, null_mask = null_text(text_embeds, text_mask)
    else:
        null_embeds = null_text_embeds.to(text_embeds).expand(text_embeds.shape[0], -1, -1)
        null_mask = None if null_text_mask is None else null_text_mask.expand(text_embeds.shape[0], -1)
        if null_embeds.shape[1] != text_embeds.shape[1]:
            raise ValueError(
                f"null_text_embeds has {null_embeds.shape[1]} tokens, text_embeds {text_embeds.shape[1]}: pad both "
                "to the same length"
            )
        if (null_mask is None) != (text_mask is None):
            ones = torch.ones(text_embeds.shape[:2], dtype=torch.bool, device=text_embeds.device)
            null_mask = ones if null_mask is None else null_mask
            text_mask = ones if text_mask is None else text_mask

    def guide(cond: Tensor, uncond: Tensor, channels: int) -> Tensor:
        # w·ε_c + (1 − w)·ε_u, written so that w = 1 returns ε_c up to rounding.
        guided = uncond[:, :channels] + cond_scale * (cond[:, :channels] - uncond[:, :channels])
        if cond.shape[1] == channels:
            return guided
        return torch.cat([guided, cond[:, channels:]], dim=1)

    def separate(x_t: Tensor, t: Tensor) -> Tensor:
        cond = model(x_t, t, text_embeds=text_embeds, text_mask=text_mask, **lowres)
        uncond = model(x_t, t, text_embeds=null_embeds, text_mask=null_mask, **lowres)
        return guide(cond, uncond, x_t.shape[1])

    both_embeds = torch.cat([text_embeds, null_embeds])
    both_mask = None if text_mask is None else torch.cat([text_mask, null_mask])
    both_lowres = {k: None if v is None else torch.cat([v, v]) for k, v in lowres.items()}

    def batched(x_t: Tensor, t: Tensor) -> Tensor:
        out = model(
            torch.cat([x_t, x_t]), torch.cat([t, t]), text_embeds=both_embeds, text_mask=both_mask, **both_lowres
        )
        cond, uncond = out.chunk(2)
        return guide(cond, uncond, x_t.shape[1])

    if mode == "batched":
        return batched
    if mode == "separate":
        return separate
    raise ValueError(f"unknown guidance mode {mode!r}; choose 'batched' or 'separate'")


def model_denoiser(
    model: DenoisingNetwork,
    diffusion: GaussianDiffusion,
    *,
    text_embeds: Tensor,
    text_mask: Tensor | None,
    cond_scale: float | None = 5.0,
    thresholding: str = "dynamic",
    percentile: float = 0.995,
    guidance_mode: GuidanceMode = "batched",
    lowres_cond_img: Tensor | None = None,
    lowres_noise_level: Tensor | None = None,
    threshold_max: float | None = None,
    null_text_embeds: Tensor | None = None,
    null_text_mask: Tensor | None = None,
) -> Denoiser:
    """Network + text + guidance + thresholding as one ``denoiser(x_t, t) -> x̂₀`` for the samplers below
    (``Denoised(x̂₀, var_values)`` when the diffusion's variance is "learned_range")."""
    guided = classifier_free_guidance(
        model,
        text_embeds=text_embeds,
        text_mask=text_mask,
        cond_scale=cond_scale,
        mode=guidance_mode,
        lowres_cond_img=lowres_cond_img,
        lowres_noise_level=lowres_noise_level,
        null_text_embeds=null_text_embeds,
        null_text_mask=null_text_mask,
    )
    learned = diffusion.config.variance == "learned_range"

    def denoise(x_t: Tensor, t: Tensor) -> Tensor | Denoised:
        out = guided(x_t, t)
        x0 = diffusion.predict_start(x_t, t, out)
        if learned:
            return Denoised(x0, out[:, x_t.shape[1] :].float())
        return x0

    return thresholded(denoise, thresholding, percentile=percentile, max_value=threshold_max)


# ---- Samplers: sampler(denoiser, x, timesteps, *, log_snr, generators, callback) -> x_0 ----


def _expand(t: Tensor, x: Tensor) -> Tensor:
    return t.expand(x.shape[0])


@torch.no_grad()
def sample_ddim(
    denoiser: Denoiser,
    x: Tensor,
    timesteps: Tensor,
    *,
    log_snr: LogSnr,
    generators: Generators = None,
    callback: Callback | None = None,
    eta: float = 0.0,
) -> Tensor:
    """DDIM (Song et al. 2021, Eq. 12), deterministic at eta = 0; eta = 1 matches ancestral sampling."""
    for i in range(len(timesteps) - 1):
        t, s = timesteps[i], timesteps[i + 1]
        x0, _ = _split_denoised(denoiser(x, _expand(t, x)))
        if i == len(timesteps) - 2:
            x = x0
        else:
            lsnr_t, lsnr_s = log_snr(t), log_snr(s)
            alpha_t, sigma_t = alpha_sigma(lsnr_t)
            alpha_s, sigma_s = alpha_sigma(lsnr_s)
            # 1. The noise implied by the (possibly thresholded) x̂₀, as imagen-pytorch and diffusers recompute it.
            eps = (x - alpha_t * x0) / sigma_t
            # 2. σ_η² = η² · Var[q(x_s | x_t, x_0)], with Var = sigma_s² · (1 − SNR_t / SNR_s).
            c = -torch.expm1(lsnr_t - lsnr_s)
            noise_std = eta * (sigma_s**2 * c).sqrt()
            # 3. x_s = alpha_s · x̂₀ + sqrt(sigma_s² − σ_η²) · ε̂ + σ_η · z.
            x = alpha_s * x0 + (sigma_s**2 - noise_std**2).clamp(min=0).sqrt() * eps
            if eta > 0:
                x = x + noise_std * randn_like_per_sample(x, generators)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "denoised": x0})
    return x


@torch.no_grad()
def sample_ancestral(
    denoiser: Denoiser,
    x: Tensor,
    timesteps: Tensor,
    *,
    log_snr: LogSnr,
    generators: Generators = None,
    callback: Callback | None = None,
    gamma: float = 0.0,
) -> Tensor:
    """Ancestral sampling from the DDPM posterior q(x_s | x_t, x̂₀) (Ho et al. 2020, Alg. 2; VDM Eq. 32-33), with
    Improved DDPM's variance interpolation (Nichol & Dhariwal 2021, Eq. 15): log Σ = v·log β + (1 − v)·log β̃,
    v the network's learned range when its denoiser returns ``Denoised``, else the fixed ``gamma`` (0: β̃)."""
    for i in range(len(timesteps) - 1):
        t, s = timesteps[i], timesteps[i + 1]
        x0, var_values = _split_denoised(denoiser(x, _expand(t, x)))
        if i == len(timesteps) - 2:
            x = x0
        else:
            lsnr_t, lsnr_s = log_snr(t), log_snr(s)
            alpha_t, _ = alpha_sigma(lsnr_t)
            alpha_s, sigma_s = alpha_sigma(lsnr_s)
            # c = 1 − SNR_t / SNR_s, the share of x_s's noise that is new.
            c = -torch.expm1(lsnr_t - lsnr_s)
            # 1. Posterior mean: alpha_s · (x_t · (1 − c) / alpha_t + c · x̂₀).
            mean = alpha_s * (x * (1 - c) / alpha_t + c * x0)
            # 2. Variance. Posterior β̃ = sigma_s² · c; the step's β = 1 − alpha_t² / alpha_s².
            if var_values is None and gamma == 0.0:
                std = (sigma_s**2 * c).sqrt()
            else:
                min_log = torch.log((sigma_s**2 * c).clamp(min=1e-20))
                max_log = torch.log(-torch.expm1(F.logsigmoid(lsnr_t) - F.logsigmoid(lsnr_s)))
                frac = torch.as_tensor(gamma) if var_values is None else (var_values + 1) / 2
                std = torch.exp(0.5 * (frac * max_log + (1 - frac) * min_log))
            x = mean + std * randn_like_per_sample(x, generators)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "denoised": x0})
    return x


@torch.no_grad()
def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: Tensor,
    timesteps: Tensor,
    *,
    log_snr: LogSnr,
    generators: Generators = None,
    callback: Callback | None = None,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), multistep second order in x̂₀, with λ = log_snr / 2."""
    old_x0 = None
    h_last = None
    for i in range(len(timesteps) - 1):
        t, s = timesteps[i], timesteps[i + 1]
        x0, _ = _split_denoised(denoiser(x, _expand(t, x)))
        if i == len(timesteps) - 2:
            x = x0
        else:
            lsnr_t, lsnr_s = log_snr(t), log_snr(s)
            _, sigma_t = alpha_sigma(lsnr_t)
            alpha_s, sigma_s = alpha_sigma(lsnr_s)
            h = (lsnr_s - lsnr_t) / 2
            if old_x0 is None:
                d = x0
            else:
                r = h_last / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * old_x0
            # x_s = (sigma_s / sigma_t) · x_t − alpha_s · (e^{−h} − 1) · D
            x = (sigma_s / sigma_t) * x - alpha_s * torch.expm1(-h) * d
            old_x0, h_last = x0, h
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "denoised": x0})
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddim": sample_ddim,
    "ancestral": sample_ancestral,
    "dpmpp": sample_dpmpp_2m,
}


def get_sampler(name: str) -> Callable[..., Tensor]:
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}") from None
