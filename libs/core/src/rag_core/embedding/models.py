"""The embedding models a collection can be created with, and building their embedders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rag_config import IngestSettings, QuerySettings

from rag_core.errors import InvalidInput

if TYPE_CHECKING:
    from rag_core.embedding.base import Embedder  # imports numpy, which only embedders need


@dataclass(frozen=True)
class ModelSpec:
    name: str  # what a collection records
    provider: Literal["local", "openai", "google"]
    remote_name: str
    dimension: int
    max_tokens: int
    # What of the model its name does not say (how the weights were quantized), where it
    # changed since the name was first used: documents stored before are a new version at
    # their next submission, and their vectors are never reused for another's text.
    revision: str = ""
    # The offline generator's: below this similarity of the question to its nearest sentence
    # (embedded after its title and headings), the sources do not answer it (measured over
    # docs/: docs/benchmarks.md); 0, never judged so (a hosted model's scale, unmeasured).
    min_answer_similarity: float = 0.0


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("all-MiniLM-L6-v2", "local", "fp32", 384, 254, min_answer_similarity=0.25),
        # w7: weights in 7 bits, the same vectors on every x86 CPU (rag_core.embedding.local).
        ModelSpec(
            "all-MiniLM-L6-v2-int8",
            "local",
            "int8",
            384,
            254,
            revision="w7",
            min_answer_similarity=0.25,
        ),
        ModelSpec("openai/text-embedding-3-small", "openai", "text-embedding-3-small", 1536, 8000),
        ModelSpec("openai/text-embedding-3-large", "openai", "text-embedding-3-large", 3072, 8000),
        ModelSpec("google/gemini-embedding-001", "google", "gemini-embedding-001", 768, 2000),
        ModelSpec("google/text-embedding-004", "google", "text-embedding-004", 768, 2000),
    )
}


def model_revision(name: str) -> str:
    """The model's revision ("" for an unknown name, or one never revised)."""
    spec = MODELS.get(name)
    return spec.revision if spec is not None else ""


def model_spec(name: str) -> ModelSpec:
    spec = MODELS.get(name)
    if spec is None:
        raise InvalidInput.for_field(
            "embedding_model",
            "unknown model",
            detail=f"unknown embedding model {name!r}; available: {', '.join(MODELS)}",
        )
    return spec


class EmbedderFactory:
    """One embedder per model, built on first use and kept."""

    def __init__(self, settings: IngestSettings | QuerySettings) -> None:
        self.settings = settings
        self._built: dict[str, Embedder] = {}

    def check_available(self, name: str) -> ModelSpec:
        """The model's spec, or a 422 naming what is missing to use it."""
        spec = model_spec(name)
        if spec.provider == "openai" and self.settings.openai_api_key is None:
            raise InvalidInput.for_field(
                "embedding_model",
                "no API key",
                detail=f"{name} needs OPENAI_API_KEY, which is not set",
            )
        if spec.provider == "google" and self.settings.google_api_key is None:
            raise InvalidInput.for_field(
                "embedding_model",
                "no API key",
                detail=f"{name} needs GOOGLE_API_KEY, which is not set",
            )
        return spec

    def get(self, name: str) -> Embedder:
        if name not in self._built:
            self._built[name] = self._build(self.check_available(name))
        return self._built[name]

    def _build(self, spec: ModelSpec) -> Embedder:
        s = self.settings
        if spec.provider == "local":
            from rag_core.embedding.local import LocalEmbedder  # noqa: PLC0415

            return LocalEmbedder(
                Path(s.models_path),
                variant="int8" if spec.remote_name == "int8" else "fp32",
                threads=s.embed_threads,
            )
        if spec.provider == "openai":
            from rag_core.embedding.hosted import OpenAIEmbedder  # noqa: PLC0415

            assert s.openai_api_key is not None
            return OpenAIEmbedder(
                model=spec.remote_name,
                dimension=spec.dimension,
                api_key=s.openai_api_key.get_secret_value(),
                base_url=s.openai_base_url,
                timeout=s.embedding_timeout_seconds,
                max_retries=s.embedding_max_retries,
                max_tokens=spec.max_tokens,
            )
        from rag_core.embedding.hosted import GoogleEmbedder  # noqa: PLC0415

        assert s.google_api_key is not None
        return GoogleEmbedder(
            model=spec.remote_name,
            dimension=spec.dimension,
            api_key=s.google_api_key.get_secret_value(),
            base_url=s.google_base_url,
            timeout=s.embedding_timeout_seconds,
            max_tokens=spec.max_tokens,
        )

    async def close(self) -> None:
        for embedder in self._built.values():
            close = getattr(embedder, "close", None)
            if close is not None:
                result = close()
                if hasattr(result, "__await__"):
                    await result
