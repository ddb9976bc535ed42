"""imagen_core's cascade as a sample backend: stage checkpoints in, images out (DESIGN.md §5).

A model is one or more imagen_core stage checkpoints (base first; each file carries its own config, and the base
carries its tiny T5 or names the real one), or the offline tiny twin: an untrained 16 px base + 16→32 SR cascade
built from imagen_core.config presets. Sampling settings are per stage: a scalar applies to every stage, a list gives
one value per stage (base first), and what is not given comes from each checkpoint's own ``SamplerConfig``.

    {"checkpoint": "imagen_core:toy_base"}                               # the shipped toy checkpoint
    {"checkpoint": "/models/imagen", "stages": 2, "steps": [50, 25],     # a folder of stage files, ordered by
     "cond_scale": [5.0, 8.0], "lowres_noise_level": 0.2,                # image size; guidance per stage
     "sampler": "ddim", "thresholding": "dynamic", "device": "cuda", "dtype": "bfloat16"}
    {"checkpoint": ["/models/if/IF-I-XL.safetensors",                    # DeepFloyd IF-I-XL + IF-II-L converted
                    "/models/if/IF-II-L.safetensors"],                   # by python -m imagen_core.convert, with
     "text_encoder": "/models/t5-v1_1-xxl", "device": "cuda"}            # the user's own local T5-XXL folder

A converted IF stage carries IF's own sampling (DDPM with learned variance, 100 and 50 steps, guidance 7 and 4,
dynamic thresholding at 0.95 capped at 1.5, augmentation level 0.25); the settings above override it per stage.

torch and imagen_core's networks are imported inside methods: the web process validates a config (with
imagen_core.config, which is pure Python) and picks a queue, and never loads a model. Each image has its own
``torch.Generator`` seeded with its request's seed; all stages of a cascade draw from it in turn.

Checkpoint paths are not checked when the model is configured: the workers that load them may be other machines.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from django.conf import settings as django_settings
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

DTYPES = ("float32", "bfloat16", "float16")
SHIPPED_PREFIX = "imagen_core:"

# Sampler settings that may differ per stage: a scalar for every stage, or a list with one value per stage.
STAGE_SETTINGS: dict[str, type | tuple[type, ...]] = {
    "sampler": str,  # "ddim", "ancestral" or "dpmpp"
    "steps": int,
    "cond_scale": (int, float),  # classifier-free guidance weight w
    "thresholding": str,  # "dynamic", "static" or "none"
    "dynamic_threshold_percentile": (int, float),
    "lowres_noise_level": (int, float),  # noise conditioning augmentation level of SR stages (0-0.3 in the paper)
    "ddim_eta": (int, float),
    "dynamic_threshold_max": (int, float),  # cap on the dynamic threshold s (IF: 1.5)
    "ancestral_gamma": (int, float),  # ancestral sampler's fixed variance interpolation (networks without learned one)
}
CONFIG_TYPES: dict[str, type | tuple[type, ...]] = {
    "checkpoint": (str, list),  # a stage file, a folder of them, a list (base first); "imagen_core:NAME": shipped
    "text_encoder": str,  # a hub id or local T5 folder instead of the one the base checkpoint names
    "tiny": bool,  # the offline tiny twin instead of checkpoints
    "init_seed": int,  # tiny only: seed of the weights
    "stages": int,  # run the first N stages (default: all)
    "device": str,  # "auto", "cpu", "cuda", "cuda:1", "mps"
    "dtype": str,  # one of DTYPES: the autocast dtype on an accelerator (weights stay float32)
    "queue": str,  # "gpu" or "cpu"; default: "cpu" for device cpu and for the tiny twin on "auto", else "gpu"
    "threads": int,  # torch intra-op CPU threads while generating
    "batch_size": int,  # images per sampling call
    **{key: list for key in STAGE_SETTINGS},  # or one value per stage; checked against STAGE_SETTINGS
}

# Cascades kept loaded in this process, keyed by what determines the weights and where they live.
_CASCADES: dict[str, Any] = {}
_CASCADES_KEPT = 1


def tiny_imagen_config(init_seed: int = 0, **overrides: Any) -> dict[str, Any]:
    """The config of the offline tiny twin: a 16 px base and a 16→32 SR stage, a few steps each, on the CPU."""
    return {"tiny": True, "init_seed": init_seed, "device": "cpu", "steps": 4, "threads": 1, **overrides}


class ImagenBackend(SampleBackend):
    """imagen_core's cascade. config: see ``CONFIG_TYPES``; ``checkpoint`` or ``tiny`` is required."""

    # A sampler setting is one value for every stage or a list of one per stage.
    config_types = {
        **CONFIG_TYPES,
        **{key: (*(kind if isinstance(kind, tuple) else (kind,)), list) for key, kind in STAGE_SETTINGS.items()},
    }

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self._check_config()
        self._imagen: Any = None
        self._paths: list[Path] = []
        self._described: dict[str, Any] | None = None

    def _check_config(self) -> None:
        from imagen_core.config import SamplerConfig

        config = self.config
        unknown = sorted(set(config) - set(CONFIG_TYPES))
        if unknown:
            raise ImproperlyConfigured(f"ImagenBackend: unknown config key(s) {unknown}; known: {sorted(CONFIG_TYPES)}")
        for key, value in config.items():
            if key in STAGE_SETTINGS:
                kind, items = STAGE_SETTINGS[key], value if isinstance(value, list) else [value]
            else:
                kind, items = CONFIG_TYPES[key], [value]
            # bool is an int to Python; a flag is not a step count.
            if not items or any(not isinstance(i, kind) or (isinstance(i, bool) and kind is not bool) for i in items):
                raise ImproperlyConfigured(f"ImagenBackend: config {key!r} = {value!r} has the wrong type")
        if bool(config.get("tiny")) == bool(config.get("checkpoint")):
            raise ImproperlyConfigured("ImagenBackend: give exactly one of 'checkpoint' and 'tiny'")
        checkpoints = config.get("checkpoint", [])
        if isinstance(checkpoints, list) and not all(isinstance(c, str) and c for c in checkpoints):
            raise ImproperlyConfigured("ImagenBackend: checkpoint must be a path, a folder, or a list of paths")
        for key in ("stages", "threads", "batch_size"):
            if key in config and config[key] < 1:
                raise ImproperlyConfigured(f"ImagenBackend: {key} must be at least 1, not {config[key]}")
        if config.get("dtype", "float32") not in DTYPES:
            raise ImproperlyConfigured(f"ImagenBackend: dtype {config['dtype']!r} is not one of {DTYPES}")
        if config.get("queue", "cpu") not in QUEUE_KINDS:
            raise ImproperlyConfigured(f"ImagenBackend: queue {config['queue']!r} is not one of {QUEUE_KINDS}")
        lists = {key: len(config[key]) for key in STAGE_SETTINGS if isinstance(config.get(key), list)}
        stage_count = config.get("stages")
        if len(set(lists.values()) | ({stage_count} if stage_count and lists else set())) > 1:
            raise ImproperlyConfigured(
                f"ImagenBackend: per-stage lists must all have one value per stage run: {lists}"
                + (f", stages = {stage_count}" if stage_count else "")
            )
        for index in range(max(lists.values(), default=1)):
            try:
                SamplerConfig(**self._sampler_overrides(index))
            except (TypeError, ValueError) as exc:
                raise ImproperlyConfigured(f"ImagenBackend: sampler settings of stage {index + 1}: {exc}") from exc

    def _sampler_overrides(self, index: int) -> dict[str, Any]:
        """The sampler fields the config sets for stage ``index`` (0 = base)."""
        overrides = {}
        for key in STAGE_SETTINGS:
            if key in self.config:
                value = self.config[key]
                overrides[key] = value[index] if isinstance(value, list) else value
        return overrides

    def queue(self) -> QueueKind:
        if "queue" in self.config:
            return self.config["queue"]
        device = self.config.get("device", "auto")
        if device == "cpu" or (device == "auto" and self.config.get("tiny")):
            return "cpu"
        return "gpu"

    # --- loading ---------------------------------------------------------------------------------------------

    def checkpoint_paths(self) -> list[Path]:
        """The stage files, base first: a folder's ``*.safetensors`` ordered by their stages' image size."""
        from imagen_core.checkpoints import read_stage_config

        given = self.config.get("checkpoint", [])
        paths = []
        for entry in given if isinstance(given, list) else [given]:
            path = _resolve(entry)
            if path.is_dir():
                files = sorted(path.glob("*.safetensors"))
                if not files:
                    raise BackendError(f"checkpoint folder {path} has no *.safetensors stage files")
                try:
                    files.sort(key=lambda file: read_stage_config(file).image_size)
                except (OSError, ValueError) as exc:
                    raise BackendError(f"checkpoint folder {path}: {exc}") from exc
                paths += files
            elif path.is_file():
                paths.append(path)
            else:
                raise BackendError(f"no imagen_core checkpoint at {path} (from config checkpoint {entry!r})")
        return paths

    def _device(self) -> str:
        return torch_device(self.config.get("device", "auto"))

    def prepare(self) -> None:
        self._cascade()

    def _cascade(self) -> Any:
        if self._imagen is not None:
            return self._imagen
        device = self._device()
        if not self.config.get("tiny"):
            self._paths = self.checkpoint_paths()
        key = json.dumps(
            {
                "tiny": self.config.get("tiny", False),
                "init_seed": self.config.get("init_seed", 0),
                "paths": [str(p) for p in self._paths],
                "text_encoder": self.config.get("text_encoder"),
                "mtimes": [p.stat().st_mtime_ns for p in self._paths],
                "stages": self.config.get("stages"),
                "device": device,
            },
            sort_keys=True,
        )
        imagen = _CASCADES.get(key)
        if imagen is None:
            imagen = self._load(device)
            while len(_CASCADES) >= _CASCADES_KEPT:
                _CASCADES.pop(next(iter(_CASCADES)))
            _CASCADES[key] = imagen
        self._imagen = imagen
        return imagen

    def _load(self, device: str) -> Any:
        from imagen_core.imagen import Imagen

        if self.config.get("tiny"):
            imagen = tiny_imagen(self.config.get("init_seed", 0))
        else:
            paths = self._paths[: self.config.get("stages", len(self._paths))]
            try:
                imagen = Imagen.from_checkpoints(
                    [str(p) for p in paths], device="cpu", text_encoder=self.config.get("text_encoder")
                )
            except (OSError, ValueError) as exc:
                raise BackendError(f"cannot load the imagen_core cascade {[str(p) for p in paths]}: {exc}") from exc
        stages = self.config.get("stages", len(imagen.stages))
        if stages > len(imagen.stages):
            raise BackendError(f"stages = {stages}, but the cascade has {len(imagen.stages)} stage(s)")
        if imagen.text_encoder is None:
            raise BackendError("the base checkpoint has no text encoder and names none")
        return imagen.eval().to(device)

    # --- generation ------------------------------------------------------------------------------------------

    def _stage_count(self, imagen: Any) -> int:
        return self.config.get("stages", len(imagen.stages))

    def samplers(self) -> list[Any]:
        """Each stage's SamplerConfig: the checkpoint's own, with the config's settings over it."""
        imagen = self._cascade()
        return [
            dataclasses.replace(stage.sampler, **self._sampler_overrides(index))
            for index, stage in enumerate(imagen.stages[: self._stage_count(imagen)])
        ]

    def describe(self) -> dict[str, Any]:
        if self._described is not None:
            return dict(self._described)
        settings: dict[str, Any] = {
            "backend": "imagen_core",
            "model": "tiny" if self.config.get("tiny") else self.config["checkpoint"],
            "libraries": {
                "imagen_core": _imagen_core_version(),
                **{name: _version(name) for name in ("torch", "transformers", "safetensors")},
            },
        }
        if "init_seed" in self.config:
            settings["init_seed"] = self.config["init_seed"]
        if self._imagen is not None:
            imagen = self._imagen
            stages = []
            for index, (stage, sampler) in enumerate(zip(imagen.stages, self.samplers(), strict=False)):
                described = {
                    "image_size": stage.image_size,
                    "sampler": sampler.sampler,
                    "steps": sampler.steps,
                    "cond_scale": sampler.cond_scale,
                    "thresholding": sampler.thresholding,
                    "dynamic_threshold_percentile": sampler.dynamic_threshold_percentile,
                    "schedule": stage.diffusion.schedule,
                }
                if stage.lowres_image_size is not None:
                    described["lowres_noise_level"] = sampler.lowres_noise_level
                if sampler.sampler == "ddim":
                    described["ddim_eta"] = sampler.ddim_eta
                if index < len(self._paths):
                    described["checkpoint_sha256"] = _file_sha256(self._paths[index])
                stages.append(described)
            first = stages[0]
            settings.update(
                scheduler=first["sampler"],
                num_inference_steps=first["steps"],
                guidance_scale=first["cond_scale"],
                stages=stages,
                text_encoder=imagen.text_encoder.name,
                device=str(next(imagen.parameters()).device),
                dtype=self.config.get("dtype", "float32"),
            )
            self._described = settings
        return dict(settings)

    def generate(self, requests: Sequence[SampleRequest]) -> list[GeneratedImage]:
        import torch
        from PIL import Image

        from imagen_core.imagen import generators_for
        from imagen_core.training import tensor_to_uint8

        if any(request.seed is None for request in requests):
            raise BackendError("every generated sample needs a seed")
        imagen = self._cascade()
        samplers = self.samplers()
        described = self.describe()
        device = str(next(imagen.parameters()).device)
        batch_size = self.config.get("batch_size", 8)
        results: list[GeneratedImage] = []
        threads = self.config.get("threads")
        before = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            for start in range(0, len(requests), batch_size):
                chunk = requests[start : start + batch_size]
                # CPU generators: the same seed draws the same noise on any device.
                generators = generators_for([request.seed for request in chunk], device="cpu")
                try:
                    with torch.inference_mode(), _autocast(device, self.config.get("dtype", "float32")):
                        images = imagen.sample(
                            [request.prompt_text for request in chunk],
                            generators=generators,
                            stop_at=len(samplers) - 1,
                            samplers=samplers,
                        )
                except torch.OutOfMemoryError as exc:
                    raise BackendError(f"out of memory on {device}, {len(chunk)} image(s) per call: {exc}") from exc
                for request, pixels in zip(chunk, tensor_to_uint8(images), strict=True):
                    image = Image.fromarray(pixels)
                    settings = {**described, "seed": request.seed, "height": image.height, "width": image.width}
                    results.append(GeneratedImage(request=request, image=image, settings=settings))
        finally:
            torch.set_num_threads(before)
        return results


def tiny_imagen(init_seed: int = 0) -> Any:
    """An untrained imagen_core cascade from small presets: 16 px base + 16→32 SR, tiny offline T5.

    Every weight, zero-initialised output layers included, is random from ``init_seed`` (under a forked RNG, so the
    caller's global RNG does not move), so its images depend on the prompt and the seed like a trained model's.
    """
    import torch

    from imagen_core.config import TINY, TINY_SR, CascadeConfig, SamplerConfig, StageConfig
    from imagen_core.imagen import Imagen
    from imagen_core.text_encoder import TextEncoder

    text = {"text_encoder_name": "tiny-t5-byt5", "text_embed_dim": 32, "max_text_len": 64}
    sampler = SamplerConfig(steps=4, cond_scale=3.0)
    base = StageConfig(unet=TINY, image_size=16, sampler=sampler, **text)
    sr = StageConfig(
        unet=dataclasses.replace(TINY_SR, image_size=32), image_size=32, lowres_image_size=16, sampler=sampler, **text
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        imagen = Imagen(CascadeConfig(stages=(base, sr)), text_encoder=TextEncoder.tiny(seed=init_seed, max_length=64))
        with torch.no_grad():
            for parameter in imagen.unets.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
    return imagen.eval().requires_grad_(False)


def _resolve(entry: str) -> Path:
    """A path; ``imagen_core:NAME`` is ``imagen_core/assets/NAME.safetensors`` of this code base."""
    if entry.startswith(SHIPPED_PREFIX):
        return (
            Path(django_settings.BASE_DIR)
            / "imagen_core"
            / "assets"
            / f"{entry.removeprefix(SHIPPED_PREFIX)}.safetensors"
        )
    return Path(entry).expanduser()


def _autocast(device: str, dtype: str):
    import contextlib

    import torch

    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=getattr(torch, dtype))


def _file_sha256(path: Path) -> str:
    return _sha256_of(path, path.stat().st_mtime_ns)


@functools.cache
def _sha256_of(path: Path, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


@functools.cache
def _imagen_core_version() -> str:
    """imagen_core ships inside this code base: its version is the project's, plus the git commit when known."""
    import subprocess
    import tomllib

    pyproject = Path(django_settings.BASE_DIR) / "pyproject.toml"
    try:
        base = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        base = "unknown"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=django_settings.BASE_DIR,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{base}+{commit}" if commit else base
