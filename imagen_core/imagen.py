"""The cascade: base → 64→256 → 256→1024, or any prefix of it (Imagen, arXiv 2205.11487, Sec. 2.5, App. F).

Each stage is a U-Net with its own ``GaussianDiffusion``; every stage is conditioned on the same frozen text
embeddings. A super-resolution stage also sees the previous stage's image, upsampled to its own size and corrupted
by noise conditioning augmentation (Sec. 2.5): variance-preserving noise at ``aug_level`` — with the stage's own
schedule, ``q_sample(lowres, t=aug_level)`` — drawn uniformly from [0, 1] per example in training and fixed
(``SamplerConfig.lowres_noise_level``, 0–0.3 in the paper) when sampling; the network is told the level. The
256→1024 stage trains on random crops (``StageConfig.train_crop_size``), cut at the same place from the target and
its upsampled low-res conditioning, as the paper trains it on 64→256 crops.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imagen_core.config import CascadeConfig, SamplerConfig, StageConfig
from imagen_core.diffusion import GaussianDiffusion
from imagen_core.sampling import (
    Callback,
    discrete_timesteps,
    get_sampler,
    get_timesteps,
    model_denoiser,
    noise_like,
)
from imagen_core.text_encoder import TextEncoder


def resize_image(images: Tensor, size: int) -> Tensor:
    """Resize [B,C,H,W] to size×size: antialiased bilinear when shrinking, bilinear when enlarging."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    shrinking = size < images.shape[-1]
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)


def lowres_condition(images: Tensor, stage: StageConfig) -> Tensor:
    """The super-resolution input for ``images`` [B,C,H,W]: down to ``lowres_image_size``, back up to full size."""
    if stage.lowres_image_size is None:
        raise ValueError(f"stage of image_size {stage.image_size} is not a super-resolution stage")
    return resize_image(resize_image(images, stage.lowres_image_size), stage.image_size)


def random_crop_pair(a: Tensor, b: Tensor, size: int, *, generator: torch.Generator | None = None):
    """The same random size×size window of each example of ``a`` and ``b`` [B,C,H,W] (one window per example)."""
    batch, _, height, width = a.shape
    device = generator.device if generator is not None else None
    tops = torch.randint(0, height - size + 1, (batch,), generator=generator, device=device).tolist()
    lefts = torch.randint(0, width - size + 1, (batch,), generator=generator, device=device).tolist()
    crop_a = torch.stack(
        [a[i, :, y : y + size, x : x + size] for i, (y, x) in enumerate(zip(tops, lefts, strict=True))]
    )
    crop_b = torch.stack(
        [b[i, :, y : y + size, x : x + size] for i, (y, x) in enumerate(zip(tops, lefts, strict=True))]
    )
    return crop_a, crop_b


def stage_loss(
    unet: nn.Module,
    diffusion: GaussianDiffusion,
    stage: StageConfig,
    images: Tensor,
    *,
    text_embeds: Tensor | None,
    text_mask: Tensor | None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The training loss of one stage on full-size ``images`` [B,C,H,W] in [−1, 1].

    A super-resolution stage builds its own conditioning: low-res copy, optional crop, noise augmentation.
    """
    images = resize_image(images, stage.image_size)
    if stage.lowres_image_size is None:
        return diffusion.training_loss(unet, images, text_embeds=text_embeds, text_mask=text_mask, generator=generator)
    lowres = lowres_condition(images, stage)
    if stage.train_crop_size is not None:
        images, lowres = random_crop_pair(images, lowres, stage.train_crop_size, generator=generator)
    # Sec. 2.5: "During training, augmentation level is chosen randomly".
    aug_level = torch.rand(images.shape[0], device=images.device, generator=generator)
    aug_noise = torch.randn(lowres.shape, device=images.device, generator=generator, dtype=lowres.dtype)
    lowres = diffusion.q_sample(lowres, aug_level, aug_noise)
    return diffusion.training_loss(
        unet,
        images,
        text_embeds=text_embeds,
        text_mask=text_mask,
        lowres_cond_img=lowres,
        lowres_noise_level=aug_level,
        generator=generator,
    )


@torch.no_grad()
def sample_stage(
    unet: nn.Module,
    diffusion: GaussianDiffusion,
    stage: StageConfig,
    *,
    text_embeds: Tensor,
    text_mask: Tensor | None,
    generators: Sequence[torch.Generator],
    sampler: SamplerConfig | None = None,
    lowres_images: Tensor | None = None,
    callback: Callback | None = None,
    guidance_mode: str = "batched",
    null_text_embeds: Tensor | None = None,
    null_text_mask: Tensor | None = None,
) -> Tensor:
    """Draw one image per generator [B,C,H,W] in [−1, 1] from one stage; SR stages take ``lowres_images``.

    ``null_text_embeds``: the unconditional text of guidance when it is not zeroed embeddings (IF's empty prompt).
    """
    sampler = sampler or stage.sampler
    batch = len(generators)
    device = text_embeds.device
    lowres_cond_img = lowres_noise_level = None
    shape = (batch, stage.unet.in_channels, stage.image_size, stage.image_size)
    x = None
    if stage.lowres_image_size is not None:
        if lowres_images is None:
            raise ValueError(f"the {stage.image_size}px super-resolution stage needs lowres_images")
        if stage.lowres_align_corners:
            size = (stage.image_size, stage.image_size)
            lowres = F.interpolate(lowres_images.to(device).float(), size, mode="bilinear", align_corners=True)
        else:
            lowres = resize_image(lowres_images.to(device).float(), stage.image_size)
        if stage.lowres_noise_after_start:
            x = noise_like(shape, generators, device=device)
        # Sec. 2.5: at sampling time the augmentation level is fixed; the same noise draw per image (its generator).
        lowres_noise_level = torch.full((batch,), sampler.lowres_noise_level, device=device)
        aug_noise = noise_like(lowres.shape, generators, device=device)
        lowres_cond_img = diffusion.q_sample(lowres, lowres_noise_level, aug_noise)
    denoiser = model_denoiser(
        unet,
        diffusion,
        text_embeds=text_embeds,
        text_mask=text_mask,
        # w = 1 is the conditional model (ε̃ = ε_c): skip the unconditional half of the batch.
        cond_scale=None if sampler.cond_scale == 1.0 else sampler.cond_scale,
        thresholding=sampler.thresholding,
        percentile=sampler.dynamic_threshold_percentile,
        guidance_mode=guidance_mode,
        lowres_cond_img=lowres_cond_img,
        lowres_noise_level=lowres_noise_level,
        threshold_max=sampler.dynamic_threshold_max,
        null_text_embeds=null_text_embeds,
        null_text_mask=null_text_mask,
    )
    if x is None:
        x = noise_like(shape, generators, device=device)
    extra = {}
    if sampler.sampler == "ddim":
        extra["eta"] = sampler.ddim_eta
    elif sampler.sampler == "ancestral":
        extra["gamma"] = sampler.ancestral_gamma
    if diffusion.config.is_discrete:
        timesteps = discrete_timesteps(sampler.steps, diffusion.config.num_train_timesteps, device=device)
    else:
        timesteps = get_timesteps(sampler.steps, device=device)
    x = get_sampler(sampler.sampler)(
        denoiser,
        x,
        timesteps,
        log_snr=diffusion.log_snr,
        generators=generators,
        callback=callback,
        **extra,
    )
    return x.clamp(-1.0, 1.0)


def generators_for(seeds: Sequence[int], device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One ``torch.Generator`` per image, seeded with that image's own seed."""
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


class Imagen(nn.Module):
    """A cascade of stages sharing one text encoder; ``sample`` runs any prefix, ``loss`` trains one stage."""

    def __init__(
        self,
        cascade: CascadeConfig,
        *,
        unets: Sequence[nn.Module] | None = None,
        text_encoder: TextEncoder | None = None,
    ) -> None:
        super().__init__()
        from imagen_core.unet import build_unet

        self.cascade = cascade
        if unets is None:
            unets = [build_unet(stage.unet) for stage in cascade.stages]
        if len(unets) != len(cascade.stages):
            raise ValueError(f"got {len(unets)} U-Nets for a cascade of {len(cascade.stages)} stages")
        self.unets = nn.ModuleList(unets)
        self.diffusions = [GaussianDiffusion(stage.diffusion) for stage in cascade.stages]
        self.text_encoder = text_encoder

    @classmethod
    def from_checkpoints(
        cls, paths: Sequence[str], *, device: str | torch.device = "cpu", text_encoder: str | None = None
    ) -> Imagen:
        """A cascade from one checkpoint per stage, base first; the text encoder comes from the first, or from
        ``text_encoder`` (a hub id or local T5 folder) in place of the one the checkpoint names."""
        from imagen_core.checkpoints import load_checkpoint

        loaded = [
            load_checkpoint(p, device=device, load_text_encoder=i == 0, text_encoder=text_encoder)
            for i, p in enumerate(paths)
        ]
        cascade = CascadeConfig(stages=tuple(x.stage for x in loaded))
        return cls(cascade, unets=[x.unet for x in loaded], text_encoder=loaded[0].text_encoder).to(device)

    @property
    def stages(self) -> tuple[StageConfig, ...]:
        return self.cascade.stages

    def encode_text(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        if self.text_encoder is None:
            raise ValueError("this Imagen has no text encoder; pass text_embeds and text_mask instead of texts")
        return self.text_encoder.encode(texts)

    def loss(
        self,
        images: Tensor,
        *,
        stage: int = 0,
        texts: Sequence[str] | None = None,
        text_embeds: Tensor | None = None,
        text_mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The training loss of stage ``stage`` on images [B,C,H,W] in [−1, 1] (resized to the stage's size)."""
        if texts is not None:
            text_embeds, text_mask = self.encode_text(texts)
        return stage_loss(
            self.unets[stage],
            self.diffusions[stage],
            self.stages[stage],
            images,
            text_embeds=text_embeds,
            text_mask=text_mask,
            generator=generator,
        )

    @torch.no_grad()
    def sample(
        self,
        texts: Sequence[str] | None = None,
        *,
        seeds: Sequence[int] | None = None,
        generators: Sequence[torch.Generator] | None = None,
        text_embeds: Tensor | None = None,
        text_mask: Tensor | None = None,
        stop_at: int | None = None,
        samplers: Sequence[SamplerConfig | None] | None = None,
        callback: Callback | None = None,
    ) -> Tensor:
        """Images [B,C,H,W] in [−1, 1] from stages 0..``stop_at`` (default: all), one per seed or generator.

        ``callback`` gets each sampler step's dict plus ``"stage"``.
        """
        if texts is not None:
            text_embeds, text_mask = self.encode_text(texts)
        if text_embeds is None:
            raise ValueError("give texts, or text_embeds and text_mask")
        device = next(self.parameters()).device
        text_embeds = text_embeds.to(device)
        text_mask = None if text_mask is None else text_mask.to(device)
        if generators is None:
            seeds = range(text_embeds.shape[0]) if seeds is None else seeds
            generators = generators_for(seeds)
        if len(generators) != text_embeds.shape[0]:
            raise ValueError(f"got {len(generators)} seeds/generators for {text_embeds.shape[0]} texts")
        last = len(self.stages) - 1 if stop_at is None else stop_at
        null_embeds = null_mask = None
        if any(stage.null_text == "empty_prompt" for stage in self.stages[: last + 1]):
            # IF's unconditional input is the empty prompt's encoding, padded as the prompts are.
            null_embeds, null_mask = self.encode_text([""])
            null_embeds, null_mask = null_embeds.to(device), null_mask.to(device)
            if null_embeds.shape[1] != text_embeds.shape[1]:
                raise ValueError(
                    f"the empty prompt encodes to {null_embeds.shape[1]} tokens and the texts to "
                    f"{text_embeds.shape[1]}: a stage with null_text='empty_prompt' needs text_padding='max_length'"
                )
        images = None
        for i in range(last + 1):
            stage_callback = None
            if callback is not None:

                def stage_callback(info, i=i):
                    callback({**info, "stage": i})

            sampler = samplers[i] if samplers is not None and i < len(samplers) else None
            images = sample_stage(
                self.unets[i],
                self.diffusions[i],
                self.stages[i],
                text_embeds=text_embeds,
                text_mask=text_mask,
                generators=generators,
                sampler=sampler,
                lowres_images=images,
                callback=stage_callback,
                null_text_embeds=null_embeds if self.stages[i].null_text == "empty_prompt" else None,
                null_text_mask=null_mask if self.stages[i].null_text == "empty_prompt" else None,
            )
        return images


def with_sampler(stage: StageConfig, **changes) -> StageConfig:
    """``stage`` with some sampler fields replaced, e.g. ``with_sampler(stage, steps=20, cond_scale=3.0)``."""
    return dataclasses.replace(stage, sampler=dataclasses.replace(stage.sampler, **changes))
