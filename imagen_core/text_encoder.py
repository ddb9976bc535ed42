"""The frozen text encoder (Imagen, arXiv 2205.11487, Sec. 2.1): T5 embeddings as a sequence plus a mask.

Three ways to get one, none of which touches a model hub at import (transformers is imported lazily):

- ``TextEncoder.from_pretrained("google/t5-v1_1-xxl")`` or a local folder written by ``save_pretrained``;
- ``TextEncoder(encoder=..., tokenizer=..., name=...)`` with any injected T5-style encoder and tokenizer;
- ``TextEncoder.tiny(seed=0)``: a ByT5 tokenizer (no vocabulary file) and a randomly initialised 2-layer T5
  (d_model 32, DESIGN.md §6), the offline stand-in used by tests, the toy world and the shipped toy checkpoint.

Encoding always runs in fp32. With ``padding="longest"`` (imagen_core's own) padded positions come back as zeros with
``text_mask`` False; with ``padding="max_length"`` every text is padded to ``max_length`` and T5's outputs at the
padding positions are kept and marked True, which is how DeepFloyd IF's pipeline feeds its U-Net (77 tokens, no
mask). Precomputed embeddings can be cached on disk, one safetensors file per (encoder name, max_length, padding,
text).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

DEFAULT_MAX_LENGTH = 128

# DESIGN.md §6: the offline T5. ByT5's tokenizer has 3 special tokens + 256 bytes + 125 extra ids = 384.
TINY_T5_KWARGS: dict[str, Any] = dict(
    vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, dropout_rate=0.0
)
TINY_TOKENIZER = "byt5"


def _tiny_tokenizer():
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer()


class TextEncoder:
    """A frozen T5 encoder with its tokenizer; ``encode(texts)`` gives ``(text_embeds [B,L,D], text_mask [B,L])``.

    ``name`` identifies the weights (a hub id, a path, or a fingerprint for the tiny encoder); it keys the cache.
    """

    def __init__(
        self,
        *,
        encoder: torch.nn.Module,
        tokenizer: Any,
        name: str,
        max_length: int = DEFAULT_MAX_LENGTH,
        cache_dir: str | Path | None = None,
        tokenizer_name: str | None = None,
        padding: str = "longest",
        lowercase: bool = False,
    ) -> None:
        if padding not in ("longest", "max_length"):
            raise ValueError(f"TextEncoder: unknown padding {padding!r}; choose 'longest' or 'max_length'")
        self.padding = padding
        self.lowercase = lowercase
        self.encoder = encoder.float().eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.max_length = max_length
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.tokenizer_name = tokenizer_name

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        cache_dir: str | Path | None = None,
        device: str | torch.device = "cpu",
        padding: str = "longest",
        lowercase: bool = False,
    ) -> TextEncoder:
        """Load any Hugging Face T5 encoder (``T5EncoderModel``) and its tokenizer by hub id or local folder
        (a folder with ``config.json``, the weights and the tokenizer files, as ``save_pretrained`` writes them)."""
        from transformers import AutoTokenizer, T5EncoderModel

        encoder = T5EncoderModel.from_pretrained(str(name_or_path), dtype=torch.float32).to(device)
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
        return cls(
            encoder=encoder,
            tokenizer=tokenizer,
            name=str(name_or_path),
            max_length=max_length,
            cache_dir=cache_dir,
            tokenizer_name=str(name_or_path),
            padding=padding,
            lowercase=lowercase,
        )

    @classmethod
    def tiny(
        cls,
        *,
        seed: int = 0,
        state_dict: dict[str, Tensor] | None = None,
        max_length: int = DEFAULT_MAX_LENGTH,
        cache_dir: str | Path | None = None,
    ) -> TextEncoder:
        """The offline encoder: ByT5 tokenizer + random tiny T5 from ``seed`` (or from saved ``state_dict``)."""
        from transformers import T5Config, T5EncoderModel

        config = T5Config(**TINY_T5_KWARGS)
        # Initialise under a private generator state so that building the encoder never disturbs the caller's RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = T5EncoderModel(config)
        if state_dict is not None:
            encoder.load_state_dict(state_dict)
        encoder = encoder.float().eval()
        return cls(
            encoder=encoder,
            tokenizer=_tiny_tokenizer(),
            name=f"tiny-t5:{weights_fingerprint(encoder)}",
            max_length=max_length,
            cache_dir=cache_dir,
            tokenizer_name=TINY_TOKENIZER,
        )

    @property
    def dim(self) -> int:
        return int(self.encoder.config.d_model)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    def to(self, device: str | torch.device) -> TextEncoder:
        self.encoder.to(device)
        return self

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Token ids [B,L] and mask [B,L] bool, padded to the longest text and truncated to ``max_length``."""
        batch = self.tokenizer(
            list(texts), padding=self.padding, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return batch["input_ids"], batch["attention_mask"].bool()

    @torch.no_grad()
    def _encode_uncached(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        input_ids, text_mask = self.tokenize(texts)
        device = self.device
        out = self.encoder(input_ids=input_ids.to(device), attention_mask=text_mask.to(device)).last_hidden_state
        if self.padding == "max_length":
            # IF attends to every position, padding included, so its outputs are kept.
            return out.float(), torch.ones_like(text_mask, device=device)
        # Padding positions carry no information; zero them so that a cache file holds only real tokens.
        text_embeds = out.float().masked_fill(~text_mask.to(device)[..., None], 0.0)
        return text_embeds, text_mask.to(device)

    def encode(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Embed ``texts``: ``text_embeds`` [B,L,D] fp32 (zeros at padding) and ``text_mask`` [B,L] bool."""
        texts = [t.lower().strip() for t in texts] if self.lowercase else list(texts)
        if not texts:
            raise ValueError("encode() needs at least one text")
        if self.cache_dir is None:
            return self._encode_uncached(texts)
        rows: dict[int, Tensor] = {}
        missing = []
        for i, text in enumerate(texts):
            cached = self._cache_read(text)
            if cached is None:
                missing.append(i)
            else:
                rows[i] = cached
        if missing:
            embeds, mask = self._encode_uncached([texts[i] for i in missing])
            for j, i in enumerate(missing):
                # "max_length": the whole padded row (its mask is all True).
                rows[i] = embeds[j, mask[j]].cpu()
                self._cache_write(texts[i], rows[i])
        return pad_sequences([rows[i] for i in range(len(texts))], device=self.device)

    def cache_path(self, text: str) -> Path:
        if self.cache_dir is None:
            raise ValueError("this TextEncoder has no cache_dir")
        padding = "" if self.padding == "longest" else f"\0{self.padding}"
        key = hashlib.sha256(f"{self.name}\0{self.max_length}{padding}\0{text}".encode()).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.safetensors"

    def _cache_read(self, text: str) -> Tensor | None:
        from safetensors.torch import load_file

        path = self.cache_path(text)
        if not path.exists():
            return None
        return load_file(str(path))["text_embeds"]

    def _cache_write(self, text: str, embeds: Tensor) -> None:
        from safetensors.torch import save_file

        path = self.cache_path(text)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{id(embeds)}")
        save_file({"text_embeds": embeds.contiguous()}, str(tmp), metadata={"encoder": self.name, "text": text})
        # Atomic: a reader never sees half a file, and concurrent writers of the same text agree on the content.
        tmp.replace(path)


def pad_sequences(rows: Sequence[Tensor], *, device: str | torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Stack variable-length embeddings [L_i, D] into ``(text_embeds [B,L,D], text_mask [B,L])`` with zero padding."""
    length = max(1, max(r.shape[0] for r in rows))
    dim = rows[0].shape[-1]
    text_embeds = torch.zeros(len(rows), length, dim, dtype=torch.float32)
    text_mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, r in enumerate(rows):
        text_embeds[i, : r.shape[0]] = r
        text_mask[i, : r.shape[0]] = True
    return text_embeds.to(device), text_mask.to(device)


def weights_fingerprint(module: torch.nn.Module) -> str:
    """A short content hash of a module's parameters (names, shapes and values)."""
    digest = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()[:16]
