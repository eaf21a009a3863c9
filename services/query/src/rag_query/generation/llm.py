"""Language models: any OpenAI-compatible chat API (OpenAI, vLLM, Ollama, llama.cpp server)
and Google Gemini through google-genai. Each call has a time limit and is retried on 429,
5xx and timeouts by the SDK (LLM_MAX_RETRIES, with backoff); what still fails is raised as
GenerationError saying whether a later call may work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from rag_query.generation.base import GenerationError, Message, Usage
from rag_query.generation.prompts import Prompts
from rag_query.generation.sources import Source, format_sources

RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


class OpenAIModel:
    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str | None,
        timeout: float,
        max_retries: int,
    ) -> None:
        import openai  # noqa: PLC0415

        self.name = "openai"
        self.model = model
        self._openai = openai
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )

    def _error(self, exc: Exception) -> GenerationError:
        openai = self._openai
        if isinstance(exc, openai.APIStatusError):
            transient = exc.status_code in RETRY_STATUSES
            return GenerationError(
                f"the OpenAI-compatible API answered {exc.status_code}: {_message(exc.body)}",
                transient=transient,
            )
        if isinstance(exc, openai.APITimeoutError):
            return GenerationError(
                "the OpenAI-compatible API did not answer in time", transient=True
            )
        if isinstance(exc, openai.APIConnectionError):
            return GenerationError("the OpenAI-compatible API is unreachable", transient=True)
        if isinstance(exc, openai.APIError):  # an error event inside a stream
            return GenerationError(
                f"the OpenAI-compatible API failed: {exc.message[:300]}", transient=True
            )
        return GenerationError(
            f"the OpenAI-compatible API failed ({type(exc).__name__})", transient=False
        )

    async def complete(self, messages: Sequence[Message], *, max_tokens: int) -> tuple[str, Usage]:
        try:
            response = await self._client.chat.completions.create(
                model=self.model,
                messages=_chat(messages),
                max_tokens=max_tokens,
                temperature=0,
            )
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from exc
        usage = Usage()
        if response.usage is not None:
            usage = Usage(response.usage.prompt_tokens, response.usage.completion_tokens)
        return (response.choices[0].message.content or "") if response.choices else "", usage

    async def stream(
        self, messages: Sequence[Message], *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[str]:
        try:
            chunks = await self._client.chat.completions.create(
                model=self.model,
                messages=_chat(messages),
                max_tokens=max_tokens,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
            async for chunk in chunks:
                if chunk.usage is not None:
                    usage.input_tokens = chunk.usage.prompt_tokens
                    usage.output_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.delta.content:
                        yield choice.delta.content
        except self._openai.OpenAIError as exc:
            raise self._error(exc) from exc


class GoogleModel:
    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str | None,
        timeout: float,
        max_retries: int,
    ) -> None:
        from google import genai  # noqa: PLC0415
        from google.genai import errors, types  # noqa: PLC0415

        self.name = "google"
        self.model = model
        self._types = types
        self._errors = errors
        self._client = genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=base_url,
                timeout=int(timeout * 1000),
                retry_options=types.HttpRetryOptions(
                    attempts=max_retries + 1, http_status_codes=list(RETRY_STATUSES)
                ),
            ),
        )

    def _request(self, messages: Sequence[Message], max_tokens: int) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        contents = [
            self._types.Content(
                role="model" if m.role == "assistant" else "user",
                parts=[self._types.Part(text=m.content)],
            )
            for m in messages
            if m.role != "system"
        ]
        config = self._types.GenerateContentConfig(
            system_instruction=system or None, max_output_tokens=max_tokens, temperature=0
        )
        return {"model": self.model, "contents": contents, "config": config}

    def _error(self, exc: Exception) -> GenerationError:
        if isinstance(exc, self._errors.APIError):
            code = int(exc.code or 0)
            return GenerationError(
                f"the Gemini API answered {code}: {exc.message or exc.status}",
                transient=code in RETRY_STATUSES,
            )
        return GenerationError(f"the Gemini API failed ({type(exc).__name__})", transient=True)

    @staticmethod
    def _count(response: Any, usage: Usage) -> None:
        meta = getattr(response, "usage_metadata", None)
        if meta is not None:
            usage.input_tokens = meta.prompt_token_count or usage.input_tokens
            usage.output_tokens = meta.candidates_token_count or usage.output_tokens

    async def complete(self, messages: Sequence[Message], *, max_tokens: int) -> tuple[str, Usage]:
        usage = Usage()
        try:
            response = await self._client.aio.models.generate_content(
                **self._request(messages, max_tokens)
            )
        except (self._errors.APIError, OSError, TimeoutError) as exc:
            raise self._error(exc) from exc
        self._count(response, usage)
        return response.text or "", usage

    async def stream(
        self, messages: Sequence[Message], *, max_tokens: int, usage: Usage
    ) -> AsyncIterator[str]:
        try:
            chunks = await self._client.aio.models.generate_content_stream(
                **self._request(messages, max_tokens)
            )
            async for chunk in chunks:
                self._count(chunk, usage)
                if chunk.text:
                    yield chunk.text
        except (self._errors.APIError, OSError, TimeoutError) as exc:
            raise self._error(exc) from exc


class LLMAnswerGenerator:
    """Answers with a language model from the answer prompts, citing sources by number."""

    def __init__(self, model: OpenAIModel | GoogleModel, prompts: Prompts, max_tokens: int) -> None:
        self.model = model
        self.name = model.name
        self.prompts = prompts
        self.max_tokens = max_tokens

    def messages(
        self, question: str, sources: Sequence[Source], history: Sequence[Message]
    ) -> list[Message]:
        return [
            Message("system", self.prompts.render("answer_system")),
            *history,
            Message(
                "user",
                self.prompts.render(
                    "answer_user", sources=format_sources(sources), question=question
                ),
            ),
        ]

    def answer(
        self,
        question: str,
        sources: Sequence[Source],
        history: Sequence[Message],
        usage: Usage,
    ) -> AsyncIterator[str]:
        return self.model.stream(
            self.messages(question, sources, history), max_tokens=self.max_tokens, usage=usage
        )


def _chat(messages: Sequence[Message]) -> list[Any]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _message(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message") or error)[:300]
        return str(error)[:300]
    return str(body)[:300]
