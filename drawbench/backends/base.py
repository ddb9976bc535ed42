"""The sample backend contract: prompts and seeds in, images out.

A backend is chosen per evaluated model by dotted path (``EvaluatedModel.backend``) and built from that model's
``config`` dict. Backends know nothing about the database: the generation services turn prompts into
``SampleRequest``s, call ``generate()`` and store what comes back.

Seeds derive from (model, prompt, index) by hashing, so a re-run on any machine asks for the same seeds; a backend
must turn the same request into the same pixels (pass an explicit generator per image, never seed globally).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from PIL.Image import Image

    from drawbench.catalog.models import EvaluatedModel, Prompt

# Seeds fit both a signed 64-bit database column and torch.Generator.manual_seed.
SEED_BITS = 63

QueueKind = Literal["gpu", "cpu"]
QUEUE_KINDS: tuple[str, ...] = ("gpu", "cpu")


@dataclass(frozen=True)
class SampleRequest:
    """One image wanted: sample ``index`` of a prompt, to be drawn with ``seed`` (None: made elsewhere)."""

    prompt_id: int
    prompt_text: str
    prompt_position: int
    index: int
    seed: int | None


@dataclass
class GeneratedImage:
    """What a backend returns for one request: the image and the settings that made it (stored on the sample)."""

    request: SampleRequest
    image: Image
    settings: dict[str, Any] = field(default_factory=dict)


class BackendError(Exception):
    """A backend could not make the images of one prompt; the run records it against that prompt and goes on."""


class TransientBackendError(BackendError):
    """A failure worth retrying later (a busy device, a lost connection): the task retries with backoff."""


class SampleBackend:
    """Base class for sample backends.

    ``config`` is the evaluated model's ``config`` dict; a subclass validates the keys it knows in ``__init__`` and
    raises ``ImproperlyConfigured`` for bad ones, so a misconfigured model fails before any work is queued.

    Methods that child classes must implement: ``generate()``.
    Methods that child classes may override: ``prepare()``, ``describe()``, ``queue()``.
    """

    #: False for backends whose images are made elsewhere and imported (they have nothing to generate).
    generates: bool = True
    #: The config keys the backend knows and the types of their values (shown by forms; ``validate_config`` checks).
    config_types: Mapping[str, type | tuple[type, ...]] = {}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})

    @classmethod
    def validate_config(cls, config: Any) -> None:
        """Check ``config`` (an evaluated model's, as parsed from JSON) as this backend reads it, loading nothing:
        ``ImproperlyConfigured`` naming the key that is wrong. The default builds the backend, whose ``__init__``
        checks the keys it knows (cheap: weights load in ``prepare()``)."""
        if not isinstance(config, dict):
            raise ImproperlyConfigured(f"{cls.__name__}: the config must be a JSON object, not {type(config).__name__}")
        cls(config)

    def prepare(self) -> None:
        """Load what ``generate()`` needs (weights, a client). Called once per batch of prompts before any
        ``generate()``; an error here fails the whole run rather than each prompt. The default does nothing."""

    def generate(self, requests: Sequence[SampleRequest]) -> list[GeneratedImage]:
        """Return one ``GeneratedImage`` per request, in the order of ``requests``.

        The same request (prompt text and seed) must give the same pixels on every call, whatever else is in the
        batch. Raise ``TransientBackendError`` for a failure that a later retry may not meet, and any other
        exception (``BackendError`` preferably, with a message a person can act on) for a permanent failure of
        these requests: out of memory, a safety filter's blank image.
        """
        raise NotImplementedError("subclasses of SampleBackend must provide a generate() method")

    def describe(self) -> dict[str, Any]:
        """Settings common to every image of this backend (library versions, scheduler...), stored on samples."""
        cls = type(self)
        return {"backend": f"{cls.__module__}.{cls.__qualname__}"}

    def queue(self) -> QueueKind:
        """The kind of worker that runs this backend: "gpu" or "cpu" (settings.DRAWBENCH_QUEUES names the queues).

        Decided from the config alone: the web process calls it when it queues tasks and never imports torch. The
        default is "cpu".
        """
        return "cpu"


def backend_class(dotted_path: str) -> type[SampleBackend]:
    """Resolve ``dotted_path`` to a ``SampleBackend`` subclass, or fail saying what is wrong with it."""
    try:
        cls = import_string(dotted_path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"Sample backend {dotted_path!r} cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, SampleBackend)):
        raise ImproperlyConfigured(
            f"Sample backend {dotted_path!r} is not a subclass of drawbench.backends.base.SampleBackend."
        )
    return cls


def backend_config_check(dotted_path: str, config: Any) -> None:
    """``ImproperlyConfigured`` unless ``dotted_path`` is a backend and ``config`` a valid config of it."""
    backend_class(dotted_path).validate_config(config)


def backend_for(evaluated_model: EvaluatedModel) -> SampleBackend:
    """The backend of ``evaluated_model``, built from its config."""
    try:
        cls = backend_class(evaluated_model.backend)
    except ImproperlyConfigured as exc:
        raise ImproperlyConfigured(f"Evaluated model {evaluated_model}: {exc}") from exc
    return cls(evaluated_model.config)


def sample_seed(model_key: str, prompt_key: str, index: int) -> int:
    """A seed for sample ``index`` of a prompt by a model, the same on every run and machine.

    Keys are strings that do not depend on database ids (``name@version`` and the prompt's text), so reloading the
    prompts or moving to another database reproduces the same seeds.
    """
    material = "\x1f".join(("drawbench-sample-seed-v1", model_key, prompt_key, str(index))).encode()
    return int.from_bytes(hashlib.sha256(material).digest()[:8], "big") >> (64 - SEED_BITS)


def sample_seed_for(evaluated_model: EvaluatedModel, prompt: Prompt, index: int) -> int:
    """``sample_seed`` for database rows."""
    return sample_seed(f"{evaluated_model.name}@{evaluated_model.version}", prompt.text, index)


def torch_device(requested: str = "auto") -> str:
    """``requested``, or for ``"auto"`` the best device this machine has: cuda, then mps, then cpu."""
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"
