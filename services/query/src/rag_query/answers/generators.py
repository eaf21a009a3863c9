"""The generators this service can use, from its settings, and the fallback chain."""

from __future__ import annotations

from rag_config import QuerySettings
from rag_core.errors import InvalidInput

from rag_query.generation.base import AnswerGenerator
from rag_query.generation.extractive import ExtractiveGenerator
from rag_query.generation.llm import GoogleModel, LLMAnswerGenerator, OpenAIModel
from rag_query.generation.prompts import Prompts
from rag_query.retrieval.analyzer import Analyzer

GENERATORS = ("extractive", "openai", "google")


class Generators:
    def __init__(self, settings: QuerySettings, prompts: Prompts, analyzer: Analyzer) -> None:
        self.settings = settings
        self.prompts = prompts
        self.analyzer = analyzer
        self.models: dict[str, OpenAIModel | GoogleModel] = {}
        if settings.openai_api_key is not None or settings.openai_base_url:
            key = settings.openai_api_key
            self.models["openai"] = OpenAIModel(
                model=settings.openai_model,
                # Local OpenAI-compatible servers (Ollama, llama.cpp) accept any key.
                api_key=key.get_secret_value() if key else "unused",
                base_url=settings.openai_base_url,
                timeout=settings.llm_timeout_seconds,
                max_retries=settings.llm_max_retries,
            )
        if settings.google_api_key is not None:
            self.models["google"] = GoogleModel(
                model=settings.google_model,
                api_key=settings.google_api_key.get_secret_value(),
                base_url=settings.google_base_url,
                timeout=settings.llm_timeout_seconds,
                max_retries=settings.llm_max_retries,
            )
        self.fallback = [
            name.strip() for name in settings.generator_fallback.split(",") if name.strip()
        ]

    def available(self) -> list[str]:
        return ["extractive", *self.models]

    def check(self, name: str, field: str = "generator") -> str:
        if name not in GENERATORS:
            raise InvalidInput.for_field(
                field,
                "unknown generator",
                detail=f"{field}: unknown generator {name!r} (use {', '.join(GENERATORS)})",
            )
        if name not in self.available():
            needs = "OPENAI_API_KEY or OPENAI_BASE_URL" if name == "openai" else "GOOGLE_API_KEY"
            raise InvalidInput.for_field(
                field,
                "not configured",
                detail=f"{field}: the {name} generator is not configured here (set {needs})",
            )
        return name

    def chain(
        self, chosen: str | None, *, extractive: ExtractiveGenerator
    ) -> list[AnswerGenerator]:
        """The chosen generator, then the configured fallbacks that are available."""
        first = self.check(chosen or self.settings.generator)
        names = [first] + [n for n in self.fallback if n != first and n in self.available()]
        return [self.generator(name, extractive) for name in dict.fromkeys(names)]

    def generator(self, name: str, extractive: ExtractiveGenerator) -> AnswerGenerator:
        if name == "extractive":
            return extractive
        return LLMAnswerGenerator(self.models[name], self.prompts, self.settings.answer_max_tokens)

    def language_model(self, preferred: str | None = None) -> OpenAIModel | GoogleModel | None:
        """The LLM for rewriting queries and reranking: the one asked for, else the default
        generator's, else any configured."""
        for name in (preferred, self.settings.generator, "openai", "google"):
            if name in self.models:
                return self.models[name]
        return None
