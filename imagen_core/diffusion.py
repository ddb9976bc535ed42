"""Continuous-time Gaussian diffusion (Imagen, arXiv 2205.11487, Sec. 2.2 and App. B; VDM, arXiv 2107.00630).

``GaussianDiffusion`` owns the noise schedule and the training objective and takes the network as an argument, in
the manner of improved-diffusion's ``gaussian_diffusion.py``. Time is continuous, t ~ U(0, 1), and every schedule is
a log signal-to-noise ratio ``log_snr(t)``, decreasing in t, from which

    alpha_t² = sigmoid(log_snr(t)),   sigma_t² = sigmoid(−log_snr(t)),   x_t = alpha_t · x_start + sigma_t · noise.

Schedules (DESIGN.md §5): ``cosine`` for the 64×64 base and the 64→256 model; ``linear`` (β from 1e-4 to 0.02, the
1000-step DDPM schedule written as a continuous log-SNR) for the 256→1024 model; ``squaredcos_cap_v2``, the discrete
1000-step cosine schedule DeepFloyd IF was trained on, as diffusers' DDPMScheduler builds it (ᾱ in float32), with
time t standing for step t · num_train_timesteps and log-SNR interpolated linearly between steps.

Conditioning dropout: with probability ``cond_drop_prob`` (0.1) an example's text embeddings are zeroed — the paper's
"zeroing the text embeddings", not a learned null token. The text mask is kept as it was: the unconditional pass of
classifier-free guidance (``null_text``) does exactly the same, so training and sampling see the same "no text".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from imagen_core.config import DiffusionConfig


class DenoisingNetwork(Protocol):
    """The U-Net call contract (imagen_core.unet): returns the eps or v prediction, shaped like ``x_t``."""

    def __call__(
        self,
        x_t: Tensor,
        time: Tensor,
        *,
        text_embeds: Tensor | None,
        text_mask: Tensor | None,
        lowres_cond_img: Tensor | None = None,
        lowres_noise_level: Tensor | None = None,
    ) -> Tensor: ...


def _log(t: Tensor, eps: float = 1e-20) -> Tensor:
    return torch.log(t.clamp(min=eps))


def cosine_log_snr(t: Tensor, s: float = 0.008) -> Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021): alpha_t² = cos²((t + s)/(1 + s) · π/2), as a log-SNR."""
    return -_log(torch.cos((t + s) / (1 + s) * math.pi * 0.5) ** -2 - 1, eps=1e-5)


def linear_log_snr(t: Tensor, beta_start: float = 1e-4, beta_end: float = 0.02, num_steps: int = 1000) -> Tensor:
    """Linear β (DDPM's 1e-4 → 0.02 over 1000 steps) in continuous time, VDM's form: −log(expm1(1e-4 + 10 t²)).

    In general −log(expm1(beta_start + ½ · beta_end · num_steps · t²)), as lucidrains/imagen-pytorch's
    ``beta_linear_log_snr`` with the DDPM defaults.
    """
    return -_log(torch.expm1(beta_start + 0.5 * beta_end * num_steps * t**2))


def squaredcos_cap_v2_alphas_cumprod(num_steps: int = 1000, max_beta: float = 0.999) -> Tensor:
    """ᾱ_i for i = 0..T−1 exactly as diffusers' ``betas_for_alpha_bar(T, "cosine")`` and DDPMScheduler compute them:
    β_i = min(1 − ᾱ((i+1)/T)/ᾱ(i/T), max_beta) in float64, cast to float32, ᾱ = cumprod(1 − β) in float32."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)]
    return torch.cumprod(1.0 - torch.tensor(betas, dtype=torch.float32), dim=0)


def discrete_log_snr(t: Tensor, log_snr_table: Tensor) -> Tensor:
    """log-SNR at continuous t ∈ [0, 1] for a table of T discrete steps: step index t·T, linear between steps,
    clamped to [0, T−1] (t = 1 is the last step)."""
    steps = log_snr_table.shape[0]
    table = log_snr_table.to(t.device)
    index = (t * steps).clamp(0, steps - 1)
    lo = index.floor().long().clamp(max=steps - 2)
    frac = index - lo
    return table[lo] * (1 - frac) + table[lo + 1] * frac


def alpha_sigma(log_snr: Tensor) -> tuple[Tensor, Tensor]:
    """alpha = sqrt(sigmoid(log_snr)), sigma = sqrt(sigmoid(−log_snr)); alpha² + sigma² = 1 (variance preserving)."""
    return torch.sigmoid(log_snr).sqrt(), torch.sigmoid(-log_snr).sqrt()


def right_pad_dims_to(x: Tensor, t: Tensor) -> Tensor:
    """View a per-example tensor [B] as [B,1,1,1] to broadcast against images [B,C,H,W]."""
    return t.reshape(*t.shape, *((1,) * (x.ndim - t.ndim)))


def randn_like_per_sample(x: Tensor, generators: Sequence[torch.Generator] | torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x``; with a list of generators, row i comes from generators[i] alone.

    One generator per image is what makes an image reproducible from its own seed whatever batch it is drawn in.
    """
    if generators is None or isinstance(generators, torch.Generator):
        return torch.randn(x.shape, generator=generators, device=x.device, dtype=x.dtype)
    if len(generators) != x.shape[0]:
        raise ValueError(f"got {len(generators)} generators for a batch of {x.shape[0]}")
    return torch.stack(
        [torch.randn(x.shape[1:], generator=g, device=g.device, dtype=x.dtype).to(x.device) for g in generators]
    )


def null_text(text_embeds: Tensor, text_mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """The unconditional input: the same text with its embeddings zeroed and its mask kept (Sec. 2.3)."""
    return torch.zeros_like(text_embeds), text_mask


class GaussianDiffusion:
    """The forward process q(x_t | x_start), the model's parameterisation, and the training loss.

    The network is passed to ``training_loss``/``model_predictions``; this class holds no weights.
    """

    def __init__(self, config: DiffusionConfig) -> None:
        self.config = config
        self._log_snr_table: Tensor | None = None
        if config.is_discrete:
            alphas_cumprod = squaredcos_cap_v2_alphas_cumprod(config.num_train_timesteps).double()
            self._log_snr_table = (alphas_cumprod.log() - torch.log1p(-alphas_cumprod)).float()

    def log_snr(self, t: Tensor) -> Tensor:
        """log SNR at continuous times ``t`` [B] in [0, 1], clipped to [log_snr_min, log_snr_max]."""
        c = self.config
        t = t.float()
        if c.schedule == "cosine":
            log_snr = cosine_log_snr(t, s=c.cosine_s)
        elif c.schedule == "linear":
            log_snr = linear_log_snr(t, c.linear_beta_start, c.linear_beta_end, c.linear_num_steps)
        elif c.schedule == "squaredcos_cap_v2":
            log_snr = discrete_log_snr(t, self._log_snr_table)
        else:
            raise ValueError(f"DiffusionConfig.schedule: unknown schedule {c.schedule!r}")
        return log_snr.clamp(c.log_snr_min, c.log_snr_max)

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        return alpha_sigma(self.log_snr(t))

    def sample_times(self, batch_size: int, *, device: torch.device | str, generator=None) -> Tensor:
        """t ~ U(0, 1), one per example [B]; a discrete schedule draws a step i ~ U{0..T−1} and returns i / T."""
        if self.config.is_discrete:
            steps = self.config.num_train_timesteps
            return torch.randint(0, steps, (batch_size,), device=device, generator=generator).float() / steps
        return torch.rand(batch_size, device=device, generator=generator)

    def q_sample(self, x_start: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """Forward noising: x_t = alpha_t · x_start + sigma_t · noise, shapes [B,C,H,W] with t [B]."""
        alpha, sigma = self.alpha_sigma(t)
        return right_pad_dims_to(x_start, alpha) * x_start + right_pad_dims_to(x_start, sigma) * noise

    def predict_start(self, x_t: Tensor, t: Tensor, model_output: Tensor) -> Tensor:
        """x̂_start from the network output: (x_t − sigma·eps)/alpha for eps, alpha·x_t − sigma·v for v."""
        alpha, sigma = (right_pad_dims_to(x_t, a) for a in self.alpha_sigma(t))
        # A learned-variance network's extra channels carry the variance, not the prediction.
        model_output = model_output[:, : x_t.shape[1]].float()
        if self.config.pred_objective == "eps":
            return (x_t - sigma * model_output) / alpha.clamp(min=1e-8)
        return alpha * x_t - sigma * model_output

    def training_target(self, x_start: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """eps, or v = alpha·noise − sigma·x_start (Salimans & Ho 2022)."""
        if self.config.pred_objective == "eps":
            return noise
        alpha, sigma = (right_pad_dims_to(x_start, a) for a in self.alpha_sigma(t))
        return alpha * noise - sigma * x_start

    def loss_weight(self, t: Tensor) -> Tensor:
        """Per-example weight [B]: 1, or Min-SNR-γ (Hang et al. 2023) when ``min_snr_gamma`` is set (off by default)."""
        gamma = self.config.min_snr_gamma
        if gamma is None:
            return torch.ones_like(t)
        snr = self.log_snr(t).exp()
        clipped = snr.clamp(max=gamma)
        return clipped / snr if self.config.pred_objective == "eps" else clipped / (snr + 1)

    def drop_text(
        self, text_embeds: Tensor, text_mask: Tensor | None, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Zero each example's text embeddings with probability ``cond_drop_prob`` (Sec. 2.3), mask kept."""
        p = self.config.cond_drop_prob
        if p <= 0:
            return text_embeds, text_mask
        drop = torch.rand(text_embeds.shape[0], device=text_embeds.device, generator=generator) < p
        return text_embeds.masked_fill(drop[:, None, None], 0.0), text_mask

    def training_loss(
        self,
        model: DenoisingNetwork,
        x_start: Tensor,
        *,
        text_embeds: Tensor | None,
        text_mask: Tensor | None,
        lowres_cond_img: Tensor | None = None,
        lowres_noise_level: Tensor | None = None,
        generator: torch.Generator | None = None,
        t: Tensor | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """Squared (or, with ``loss="l1"``, absolute) error of the eps or v prediction at a random time.

        Conditioning dropout is applied to the text first.
        x_start [B,C,H,W] in [−1, 1]; ``t`` and ``noise`` are drawn from ``generator`` unless given.
        Returns the scalar loss.
        """
        batch = x_start.shape[0]
        if t is None:
            t = self.sample_times(batch, device=x_start.device, generator=generator)
        if noise is None:
            noise = torch.randn(x_start.shape, device=x_start.device, generator=generator, dtype=x_start.dtype)
        if text_embeds is not None:
            text_embeds, text_mask = self.drop_text(text_embeds, text_mask, generator=generator)
        x_t = self.q_sample(x_start, t, noise)
        prediction = model(
            x_t,
            t,
            text_embeds=text_embeds,
            text_mask=text_mask,
            lowres_cond_img=lowres_cond_img,
            lowres_noise_level=lowres_noise_level,
        )
        target = self.training_target(x_start, noise, t)
        error = prediction[:, : x_start.shape[1]].float() - target
        per_example = (error.abs() if self.config.loss == "l1" else error.pow(2)).flatten(1).mean(dim=1)
        return (per_example * self.loss_weight(t)).mean()
