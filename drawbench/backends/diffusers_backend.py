"""Diffusers baselines: a registry of known model families and any ``DiffusionPipeline``, by hub id or local folder.

``BASELINES`` names the families a study usually compares against: Stable Diffusion 1.x and 2.x, SDXL, DeepFloyd IF
(the open Imagen-like cascade: a 64x64 pixel-space base, a 64→256 and an optional 256→1024 super-resolution stage)
and PixArt-α. Each entry knows its pipeline classes, its default hub ids and its offline tiny twin
(drawbench.backends.diffusers_tiny). ``"auto"`` loads any pipeline with ``DiffusionPipeline.from_pretrained``, which
reads the class from the folder's ``model_index.json``.

torch, diffusers and transformers are imported inside functions: the web process imports this module (to validate
a model's config and choose its queue) but never loads a pipeline.

Each image gets its own ``torch.Generator`` seeded with the request's seed (CPU generators by default, so the same
seed draws the same starting noise on any device); a cascade's stages draw from the same per-image generator, one
after the other. The global RNG is never seeded.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from drawbench.backends.base import (
    QUEUE_KINDS,
    BackendError,
    GeneratedImage,
    QueueKind,
    SampleBackend,
    SampleRequest,
    torch_device,
)

# tiny_pipeline and tiny_tokenizer are re-exported: callers built tiny models from this module before the twins moved.
from drawbench.backends.diffusers_tiny import TINY_BUILDERS, tiny_pipeline, tiny_tokenizer  # noqa: F401

DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class BaselineStage:
    """One pipeline of a baseline: its diffusers class, default hub id and the __call__ options it needs."""

    pipeline: str
    model: str
    call_defaults: Mapping[str, Any] = field(default_factory=dict)
    # A super-resolution stage of IF reuses the base stage's T5 embeddings and loads no text encoder of its own.
    shares_text_encoder: bool = False


@dataclass(frozen=True)
class Baseline:
    """A family of text-to-image models: its stages (one, or a cascade), how many run by default, its tiny twin."""

    name: str
    description: str
    stages: tuple[BaselineStage, ...]
    tiny: str
    default_stages: int = 1
    # __call__ options that the tiny twin needs on top of (or instead of) the real model's.
    tiny_call_defaults: tuple[Mapping[str, Any], ...] = ()


_IF_CALL = {"clean_caption": True}


def _stable_diffusion(name: str, description: str, hub_id: str) -> Baseline:
    return Baseline(name, description, (BaselineStage("StableDiffusionPipeline", hub_id),), tiny="sd")


BASELINES: dict[str, Baseline] = {
    baseline.name: baseline
    for baseline in (
        Baseline(
            "auto",
            "Any DiffusionPipeline; its class is read from the model folder's model_index.json.",
            (BaselineStage("DiffusionPipeline", ""),),
            tiny="sd",
        ),
        _stable_diffusion("sd-1.4", "Stable Diffusion v1.4", "CompVis/stable-diffusion-v1-4"),
        _stable_diffusion("sd-1.5", "Stable Diffusion v1.5", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
        _stable_diffusion("sd-2.1-base", "Stable Diffusion 2.1 (512 px)", "stabilityai/stable-diffusion-2-1-base"),
        _stable_diffusion("sd-2.1", "Stable Diffusion 2.1 (768 px)", "stabilityai/stable-diffusion-2-1"),
        Baseline(
            "sdxl",
            "Stable Diffusion XL base 1.0",
            (BaselineStage("StableDiffusionXLPipeline", "stabilityai/stable-diffusion-xl-base-1.0"),),
            "sdxl",
        ),
        Baseline(
            "deepfloyd-if",
            "DeepFloyd IF: T5-XXL text, 64 px pixel-space base, 64→256 and 256→1024 super-resolution (stages=3).",
            (
                BaselineStage("IFPipeline", "DeepFloyd/IF-I-XL-v1.0", _IF_CALL),
                BaselineStage("IFSuperResolutionPipeline", "DeepFloyd/IF-II-L-v1.0", shares_text_encoder=True),
                # DeepFloyd's own recipe ends with Stability's x4 upscaler at noise level 100.
                BaselineStage(
                    "StableDiffusionUpscalePipeline", "stabilityai/stable-diffusion-x4-upscaler", {"noise_level": 100}
                ),
            ),
            tiny="if",
            default_stages=2,
            tiny_call_defaults=({"clean_caption": False}, {}),
        ),
        Baseline(
            "pixart-alpha",
            "PixArt-α XL-2 1024 px",
            (BaselineStage("PixArtAlphaPipeline", "PixArt-alpha/PixArt-XL-2-1024-MS", {"clean_caption": True}),),
            tiny="pixart",
            # The tiny transformer's 8x8 latents are not one of PixArt's aspect-ratio bins.
            tiny_call_defaults=({"clean_caption": False, "use_resolution_binning": False},),
        ),
    )
}

# Config keys and what they must be. Keys a pipeline's __call__ takes that are not listed go in ``call_options``.
CONFIG_TYPES: dict[str, type | tuple[type, ...]] = {
    "baseline": str,  # a BASELINES name; "auto" (the default) loads any DiffusionPipeline
    "model": (str, list),  # hub id ("org/name") or a local folder written by save_pretrained; a list: one per stage
    "revision": str,  # hub revision (a commit hash pins the weights)
    "variant": str,  # weight file variant, e.g. "fp16"
    "tiny": bool,  # build the baseline's offline tiny twin instead of loading weights
    "init_seed": int,  # tiny only: seed of the weight initialisation
    "dtype": str,  # one of DTYPES; "auto": float16 on CUDA, float32 elsewhere
    "device": str,  # "auto", "cpu", "cuda", "cuda:1", "mps"
    "queue": str,  # "gpu" or "cpu"; default: "cpu" for device cpu and for tiny twins on "auto", else "gpu"
    "generator_device": str,  # where the per-image noise is drawn; "cpu" keeps seeds portable across devices
    "scheduler": str,  # a diffusers scheduler class name for the first stage, e.g. "DPMSolverMultistepScheduler"
    "scheduler_options": dict,  # overrides of the first stage's scheduler config
    "num_inference_steps": int,  # first stage
    "guidance_scale": (int, float),  # first stage
    "height": int,
    "width": int,
    "negative_prompt": str,
    "batch_size": int,  # images per pipeline call
    "threads": int,  # torch intra-op CPU threads while generating (torch.set_num_threads), restored afterwards
    "call_options": dict,  # further keyword arguments of the first stage's __call__
    "stages": int,  # how many stages of a cascade run (DeepFloyd IF: 1 → 64 px, 2 → 256 px, 3 → 1024 px)
    "stage_options": list,  # one dict of __call__ options per stage, first stage first (over the keys above)
}
_FIRST_STAGE_CALL_KEYS = ("num_inference_steps", "guidance_scale", "height", "width")

# Pipelines kept loaded in this process, keyed by what determines the weights and where they live.
_PIPELINES: dict[str, list[Any]] = {}
_PIPELINES_KEPT = 1


def tiny_model_config(init_seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """The config of an offline tiny model: 64x64 images, fast on a CPU. Different ``init_seed``s, different models.

    ``baseline`` in ``overrides`` picks which family's twin (default: Stable Diffusion).
    """
    config: dict[str, Any] = {
        "tiny": True,
        "init_seed": init_seed,
        "device": "cpu",
        "num_inference_steps": 10,
        "guidance_scale": 5.0,
        "height": 64,
        "width": 64,
        "batch_size": 8,
        # Tiny tensors gain nothing from intra-op threads, and on a busy CPU spinning threads cost a lot: measured
        # 29.7 images/s with one thread against 4.9 with two on 2 cores shared with other work.
        "threads": 1,
    }
    if overrides.get("baseline") == "deepfloyd-if":
        # The twin's base stage is 16x16 (the real one 64x64); its super-resolution stage makes the 64x64 image.
        del config["height"], config["width"]
    config.update(overrides)
    return config


@dataclass(frozen=True)
class StageLoad:
    """What loading one stage means: ``getattr(diffusers, pipeline).from_pretrained(source, **options)``."""

    pipeline: str
    source: str
    options: dict[str, Any]


class DiffusersBackend(SampleBackend):
    """A diffusers text-to-image pipeline or cascade. config: see ``CONFIG_TYPES``.

    Give ``model`` (any pipeline, or a baseline's weights from elsewhere), ``baseline`` (its default hub ids) or
    ``tiny`` (the baseline's offline twin).
    """

    config_types = CONFIG_TYPES

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self._check_config()
        self._pipes: list[Any] | None = None
        self._described: dict[str, Any] | None = None

    @property
    def baseline(self) -> Baseline:
        return BASELINES[self.config.get("baseline", "auto")]

    @property
    def stage_count(self) -> int:
        return self.config.get("stages", self.baseline.default_stages)

    def _check_config(self) -> None:
        config = self.config
        unknown = sorted(set(config) - set(CONFIG_TYPES))
        if unknown:
            raise ImproperlyConfigured(
                f"DiffusersBackend: unknown config key(s) {unknown}; known keys: {sorted(CONFIG_TYPES)}"
            )
        for key, value in config.items():
            expected = CONFIG_TYPES[key]
            # bool is an int to Python; a flag is not a step count.
            if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
                raise ImproperlyConfigured(f"DiffusersBackend: config {key!r} = {value!r} has the wrong type")
        name = config.get("baseline", "auto")
        if name not in BASELINES:
            raise ImproperlyConfigured(f"DiffusersBackend: unknown baseline {name!r}; known: {sorted(BASELINES)}")
        baseline = BASELINES[name]
        model = config.get("model")
        if config.get("tiny") and model:
            raise ImproperlyConfigured("DiffusersBackend: give exactly one of 'model' (hub id or folder) and 'tiny'")
        if name == "auto" and not config.get("tiny") and not model:
            raise ImproperlyConfigured(
                "DiffusersBackend: give exactly one of 'model' (hub id or folder) and 'tiny', or a 'baseline' "
                f"(one of {sorted(set(BASELINES) - {'auto'})})"
            )
        if config.get("dtype", "auto") not in DTYPES:
            raise ImproperlyConfigured(f"DiffusersBackend: dtype {config['dtype']!r} is not one of {DTYPES}")
        if config.get("queue", "cpu") not in QUEUE_KINDS:
            raise ImproperlyConfigured(f"DiffusersBackend: queue {config['queue']!r} is not one of {QUEUE_KINDS}")
        for key in ("num_inference_steps", "height", "width", "batch_size", "threads", "stages"):
            if key in config and config[key] < 1:
                raise ImproperlyConfigured(f"DiffusersBackend: {key} must be at least 1, not {config[key]}")
        stage_count = len(baseline.stages)
        if self.stage_count > stage_count:
            raise ImproperlyConfigured(
                f"DiffusersBackend: stages = {self.stage_count}, but baseline {name!r} has {stage_count} stage(s)"
            )
        stage_options = config.get("stage_options", [])
        if len(stage_options) > self.stage_count or not all(isinstance(o, dict) for o in stage_options):
            raise ImproperlyConfigured(
                f"DiffusersBackend: stage_options must be a list of at most {self.stage_count} dict(s), one per stage"
            )
        sources = model if isinstance(model, list) else [model] if model else []
        if len(sources) > stage_count or not all(isinstance(s, str) and s for s in sources):
            raise ImproperlyConfigured(
                f"DiffusersBackend: model must be a hub id or folder, or a list of at most {stage_count} of them"
            )
        for source in sources:
            if source.startswith(("/", "./", "../", "~")) and not Path(source).expanduser().is_dir():
                raise ImproperlyConfigured(f"DiffusersBackend: local model folder {source!r} does not exist")

    def queue(self) -> QueueKind:
        if "queue" in self.config:
            return self.config["queue"]
        device = self.config.get("device", "auto")
        if device == "cpu" or (device == "auto" and self.config.get("tiny")):
            return "cpu"
        return "gpu"

    # --- loading ---------------------------------------------------------------------------------------------

    def load_plan(self) -> list[StageLoad]:
        """The pipelines that ``prepare()`` loads, stage by stage, without loading anything (tiny twins: none)."""
        if self.config.get("tiny"):
            return []
        model = self.config.get("model")
        sources = model if isinstance(model, list) else [model] if model else []
        shared = {k: self.config[k] for k in ("revision", "variant") if k in self.config}
        plan = []
        for index, stage in enumerate(self.baseline.stages[: self.stage_count]):
            source = sources[index] if index < len(sources) else stage.model
            options = dict(shared) if index == 0 else {}
            if stage.shares_text_encoder:
                options["text_encoder"] = None
            plan.append(StageLoad(pipeline=stage.pipeline, source=os.path.expanduser(source), options=options))
        return plan

    def _device(self) -> str:
        return torch_device(self.config.get("device", "auto"))

    def _dtype_name(self, device: str) -> str:
        name = self.config.get("dtype", "auto")
        if name == "auto":
            return "float16" if device.startswith("cuda") else "float32"
        return name

    def _cache_key(self) -> str:
        device = self._device()
        keys = ("baseline", "model", "revision", "variant", "tiny", "init_seed", "scheduler", "scheduler_options")
        return json.dumps(
            {
                **{k: self.config.get(k) for k in keys},
                "stages": self.stage_count,
                "device": device,
                "dtype": self._dtype_name(device),
            },
            sort_keys=True,
        )

    def prepare(self) -> None:
        self._pipelines()

    def _pipelines(self) -> list[Any]:
        if self._pipes is not None:
            return self._pipes
        key = self._cache_key()
        pipes = _PIPELINES.get(key)
        if pipes is None:
            pipes = self._load()
            while len(_PIPELINES) >= _PIPELINES_KEPT:
                _PIPELINES.pop(next(iter(_PIPELINES)))
            _PIPELINES[key] = pipes
        self._pipes = pipes
        return pipes

    def _load(self) -> list[Any]:
        import diffusers
        import torch

        device = self._device()
        dtype = getattr(torch, self._dtype_name(device))
        if self.config.get("tiny"):
            pipes = TINY_BUILDERS[self.baseline.tiny](self.config.get("init_seed", 0))[: self.stage_count]
            if dtype != torch.float32:
                pipes = [pipe.to(dtype=dtype) for pipe in pipes]
        else:
            pipes = []
            for stage in self.load_plan():
                cls = getattr(diffusers, stage.pipeline)
                try:
                    pipes.append(cls.from_pretrained(stage.source, dtype=dtype, **stage.options))
                except (OSError, ValueError) as exc:
                    offline = " (HF_HUB_OFFLINE=1: only local folders and cached models load)" if _hub_offline() else ""
                    raise BackendError(f"cannot load pipeline {stage.source!r}{offline}: {exc}") from exc
        first = pipes[0]
        if "scheduler" in self.config:
            first.scheduler = _scheduler(self.config["scheduler"], first.scheduler.config, self.config)
        elif "scheduler_options" in self.config:
            options = self.config["scheduler_options"]
            first.scheduler = type(first.scheduler).from_config(first.scheduler.config, **options)
        for pipe in pipes:
            pipe.set_progress_bar_config(disable=True)
        return [pipe.to(device) for pipe in pipes]

    # --- generation ------------------------------------------------------------------------------------------

    def _stage_options(self, index: int) -> dict[str, Any]:
        """The __call__ options of stage ``index``: the baseline's, the twin's, the config's."""
        options: dict[str, Any] = dict(self.baseline.stages[index].call_defaults)
        if self.config.get("tiny") and index < len(self.baseline.tiny_call_defaults):
            options.update(self.baseline.tiny_call_defaults[index])
        if index == 0:
            options.update({key: self.config[key] for key in _FIRST_STAGE_CALL_KEYS if key in self.config})
            options.update(self.config.get("call_options", {}))
        stage_options = self.config.get("stage_options", [])
        if index < len(stage_options):
            options.update(stage_options[index])
        return options

    def describe(self) -> dict[str, Any]:
        # The same for every image once the pipelines are loaded (it reads package metadata: worth keeping).
        if self._described is not None:
            return dict(self._described)
        model = self.config.get("model") or [stage.source for stage in self.load_plan()]
        if isinstance(model, list) and len(model) == 1:
            model = model[0]
        settings: dict[str, Any] = {
            "backend": "diffusers",
            "baseline": self.baseline.name,
            "model": "tiny" if self.config.get("tiny") else model,
            "libraries": {name: _version(name) for name in ("diffusers", "torch", "transformers")},
        }
        for key in ("init_seed", "revision", "variant", "negative_prompt", "call_options"):
            if key in self.config:
                settings[key] = self.config[key]
        if self._pipes is not None:
            stages = [self._describe_stage(index, pipe) for index, pipe in enumerate(self._pipes)]
            settings.update(stages[0])
            if len(stages) > 1:
                settings["stages"] = stages
            self._described = settings
        return dict(settings)

    def _describe_stage(self, index: int, pipe: Any) -> dict[str, Any]:
        options = self._stage_options(index)
        described = {
            "pipeline": type(pipe).__name__,
            "scheduler": type(pipe.scheduler).__name__,
            "device": str(pipe.device),
            "dtype": str(pipe.dtype).removeprefix("torch."),
            "num_inference_steps": _call_value(pipe, options, "num_inference_steps"),
            "guidance_scale": _call_value(pipe, options, "guidance_scale"),
        }
        if "noise_level" in inspect.signature(pipe.__call__).parameters:
            described["noise_level"] = _call_value(pipe, options, "noise_level")
        return described

    def generate(self, requests: Sequence[SampleRequest]) -> list[GeneratedImage]:
        if any(request.seed is None for request in requests):
            raise BackendError("every generated sample needs a seed")
        pipes = self._pipelines()
        described = self.describe()
        batch_size = self.config.get("batch_size", 8)
        results: list[GeneratedImage] = []
        with _torch_threads(self.config.get("threads")):
            for start in range(0, len(requests), batch_size):
                chunk = requests[start : start + batch_size]
                images = self._call(pipes, chunk)
                results += [
                    GeneratedImage(
                        request=request,
                        image=image,
                        settings={**described, "seed": request.seed, "height": image.height, "width": image.width},
                    )
                    for request, image in zip(chunk, images, strict=True)
                ]
        return results

    def _call(self, pipes: list[Any], chunk: Sequence[SampleRequest]) -> list[Any]:
        """One call per stage: one generator per image, so each image depends on its own seed only."""
        import torch

        generator_device = self.config.get("generator_device", "cpu")
        generators = [torch.Generator(generator_device).manual_seed(request.seed) for request in chunk]
        prompts = [request.prompt_text for request in chunk]
        negative = [self.config["negative_prompt"]] * len(chunk) if "negative_prompt" in self.config else None
        try:
            with torch.inference_mode():
                if len(pipes) == 1:
                    options = self._stage_options(0)
                    if negative is not None:
                        options["negative_prompt"] = negative
                    output = pipes[0](prompt=prompts, generator=generators, output_type="pil", **options)
                else:
                    output = self._call_cascade(pipes, prompts, negative, generators)
        except torch.OutOfMemoryError as exc:
            raise BackendError(f"out of memory on {pipes[0].device}, {len(chunk)} image(s) per call: {exc}") from exc
        flagged = getattr(output, "nsfw_content_detected", None) or getattr(output, "nsfw_detected", None) or []
        if any(flagged):
            raise BackendError(
                f"the pipeline's safety checker blanked {sum(map(bool, flagged))} of {len(chunk)} image(s)"
            )
        return list(output.images)

    def _call_cascade(self, pipes: list[Any], prompts: list[str], negative: list[str] | None, generators) -> Any:
        """DeepFloyd IF's recipe: T5 embeddings computed once by the base stage and given to each IF stage; a
        closing non-IF stage (the x4 upscaler) reads the prompt itself. Stages pass images on as tensors."""
        base_options = self._stage_options(0)
        clean_caption = base_options.pop("clean_caption", False)
        prompt_embeds, negative_embeds = pipes[0].encode_prompt(
            prompts, do_classifier_free_guidance=True, negative_prompt=negative, clean_caption=clean_caption
        )
        images = None
        output = None
        for index, pipe in enumerate(pipes):
            last = index == len(pipes) - 1
            options = base_options if index == 0 else self._stage_options(index)
            options = {k: v for k, v in options.items() if k != "clean_caption"}
            if index > 0:
                options["image"] = images
            if type(pipe).__name__.startswith("IF"):
                options.update(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds)
            else:
                options.update(prompt=prompts, negative_prompt=negative)
            output = pipe(generator=generators, output_type="pil" if last else "pt", **options)
            images = output.images
        return output


def _call_value(pipe: Any, options: Mapping[str, Any], name: str) -> Any:
    """The value a pipeline stage runs with: ours, or its own __call__ default."""
    if name in options:
        return options[name]
    parameter = inspect.signature(pipe.__call__).parameters.get(name)
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` intra-op threads, then put the process's setting back."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _scheduler(name: str, base_config: Any, config: dict[str, Any]) -> Any:
    import diffusers

    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
        raise BackendError(f"scheduler {name!r} is not a diffusers scheduler class")
    return cls.from_config(base_config, **config.get("scheduler_options", {}))


@functools.cache
def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
