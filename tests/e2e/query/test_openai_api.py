"""The OpenAI-compatible API through the official openai SDK with strict response
validation; and the openai generator talking to a real OpenAI-compatible server running here
(a second query service, which speaks the same API)."""

from __future__ import annotations

import json

import openai
import pytest
from rag_devstack import NativeStack, free_port, http_ok

from tests.support.query import QueryClient
from tests.support.replay import Replay

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def sdk(query_stack: NativeStack) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{query_stack.api_url('query')}/v1",
        api_key="unused",
        max_retries=0,
        _strict_response_validation=True,
    )


def test_models_list_the_collections(sdk: openai.OpenAI, handbook: str) -> None:
    ids = {model.id for model in sdk.models.list()}
    assert handbook in ids
    assert f"{handbook}:openai" in ids  # the other configured generators, per collection
    assert f"{handbook}:google" in ids
    # Each one by its id too (the Node SDK's models.retrieve), and a missing one in OpenAI's
    # shape: a 404 with no OpenAI body reads as "404 status code (no body)" there.
    assert sdk.models.retrieve(handbook).id == handbook
    assert sdk.models.retrieve(f"{handbook}:openai").id == f"{handbook}:openai"
    for missing in ("no-such-collection", f"{handbook}:no-such-generator"):
        with pytest.raises(openai.NotFoundError) as caught:
            sdk.models.retrieve(missing)
        assert caught.value.code == "model_not_found"
        assert caught.value.type == "invalid_request_error"


def test_chat_completion(sdk: openai.OpenAI, handbook: str) -> None:
    completion = sdk.chat.completions.create(
        model=handbook,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What must laptops use?"},
        ],
    )
    content = completion.choices[0].message.content or ""
    assert "full-disk encryption" in content
    assert "[1]" in content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.total_tokens > 0
    extra = completion.model_extra or {}
    assert extra["sources"][0]["document_id"] == "laptops"


def test_streaming_chat_completion(sdk: openai.OpenAI, handbook: str) -> None:
    stream = sdk.chat.completions.create(
        model=handbook,
        messages=[{"role": "user", "content": "When does the car park open?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "7 am" in text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert chunks[-1].usage is not None
    assert len(chunks) > 4


def test_max_tokens_and_stop_are_honoured_and_n_and_tools_refused(
    sdk: openai.OpenAI, handbook: str
) -> None:
    """They were ignored: max_tokens 5 with stop "." returned 187 tokens, said "stop"."""
    question = [{"role": "user", "content": "What must laptops use?"}]
    whole = sdk.chat.completions.create(model=handbook, messages=question)
    assert whole.usage is not None
    assert whole.usage.completion_tokens > 5
    assert "." in (whole.choices[0].message.content or "")

    cut = sdk.chat.completions.create(model=handbook, messages=question, max_tokens=5)
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None
    assert 0 < cut.usage.completion_tokens <= 5
    assert (whole.choices[0].message.content or "").startswith(
        cut.choices[0].message.content or "?"
    )

    stopped = sdk.chat.completions.create(model=handbook, messages=question, stop=["."])
    content = stopped.choices[0].message.content or ""
    assert content
    assert "." not in content
    assert stopped.choices[0].finish_reason == "stop"

    stream = sdk.chat.completions.create(
        model=handbook,
        messages=question,
        stream=True,
        max_completion_tokens=5,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == cut.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens <= 5

    for extra, field in (({"n": 2}, "n"), ({"tools": [_TOOL]}, "tools"), ({"stop": [""]}, "stop")):
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.chat.completions.create(model=handbook, messages=question, **extra)
        assert refused.value.param == field


def test_citations_are_visible_in_the_answer_text(sdk: openai.OpenAI, handbook: str) -> None:
    """Sources travelled only in the `sources` extension, which no chat frontend shows: the
    reader saw a bare [1]. The answer now ends with a list of what it cites, streamed or not,
    unless the request (or CHAT_CITATIONS) says none."""
    question = [{"role": "user", "content": "What must laptops use?"}]
    content = sdk.chat.completions.create(model=handbook, messages=question).choices[0]
    answer, heading, listed = (content.message.content or "").partition("\n\n**Sources**\n")
    assert heading
    assert "full-disk encryption" in answer
    assert "[1]" in answer
    assert listed == "- [1] [Laptop policy](https://intranet.example.org/it/laptops)"

    stream = sdk.chat.completions.create(model=handbook, messages=question, stream=True)
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed == content.message.content

    bare = sdk.chat.completions.create(
        model=handbook, messages=question, extra_body={"citations": "none"}
    )
    assert bare.choices[0].message.content == answer
    assert (bare.model_extra or {})["sources"][0]["title"] == "Laptop policy"
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(
            model=handbook, messages=question, extra_body={"citations": "footnotes"}
        )
    assert refused.value.param == "citations"  # it named no field before


def test_a_frontends_task_about_the_conversation_gets_a_short_reply(
    sdk: openai.OpenAI, handbook: str
) -> None:
    """Open WebUI asks the chat's model for a title, tags and follow-ups with a prompt that
    quotes the conversation; the offline generator answered with a dump of passages, which
    became the chat's title."""
    question = [{"role": "user", "content": "What must laptops use?"}]
    answer = sdk.chat.completions.create(model=handbook, messages=question)
    task = (
        "Write a short title for this chat, as JSON.\n<chat_history>\nUSER: What must laptops "
        f"use?\nASSISTANT: {answer.choices[0].message.content}\n</chat_history>"
    )
    reply = sdk.chat.completions.create(
        model=handbook, messages=[{"role": "user", "content": task}]
    )
    content = reply.choices[0].message.content or ""
    assert "cannot write titles" in content
    assert len(content) < 200
    assert (reply.model_extra or {})["sources"] == []
    stream = sdk.chat.completions.create(
        model=handbook, messages=[{"role": "user", "content": task}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == content
    with pytest.raises(openai.NotFoundError):  # still a model that must exist
        sdk.chat.completions.create(
            model="no-such-collection", messages=[{"role": "user", "content": task}]
        )


def test_a_question_the_collection_does_not_answer_is_said_not_to_be(
    sdk: openai.OpenAI, handbook: str
) -> None:
    """Asked how long a steak should rest, the offline generator quoted the handbook's least
    unrelated sentences, each cited, and listed them as sources. Now it says the documents
    found do not answer, cites and lists nothing (the sources found are still in `sources`);
    and a frontend's title task quoting that answer is still told apart from a question."""
    question = [{"role": "user", "content": "How long should a steak rest after the grill?"}]
    reply = sdk.chat.completions.create(model=handbook, messages=question)
    content = reply.choices[0].message.content
    assert content == "The documents found do not answer this question."
    assert (reply.model_extra or {})["sources"]  # what was found, none of it cited
    stream = sdk.chat.completions.create(model=handbook, messages=question, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == content
    task = (
        "Write a short title for this chat, as JSON.\n<chat_history>\nUSER: How long should a "
        f"steak rest after the grill?\nASSISTANT: {content}\n</chat_history>"
    )
    titled = sdk.chat.completions.create(
        model=handbook, messages=[{"role": "user", "content": task}]
    )
    assert "cannot write titles" in (titled.choices[0].message.content or "")


def test_the_request_librechat_sends_is_answered(query: QueryClient, handbook: str) -> None:
    """LibreChat's custom endpoints send OpenAI's default parameters, a `user` and a `name` on
    system and assistant messages (its documentation's request shape), streamed."""
    body = {
        "model": handbook,
        "temperature": 1,
        "top_p": 1,
        "presence_penalty": 0,
        "frequency_penalty": 0,
        "user": "LibreChat_User_ID",
        "stream": True,
        "messages": [
            {"role": "system", "name": "Assistant", "content": "Be brief."},
            {"role": "user", "content": "What must laptops use?"},
        ],
    }
    with query.http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        lines = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "full-disk encryption" in text
    assert "**Sources**" in text


_TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}


def test_earlier_turns_are_the_conversation(sdk: openai.OpenAI, handbook: str, llm: Replay) -> None:
    # The LLM stand-in is shared by the folder's tests, and whatever the last one scripted
    # would make the standalone question: here it fails, so the question is asked as it is
    # (it once answered another test's script and the answer was about parking).
    llm.script((500, "error_500.json"))
    completion = sdk.chat.completions.create(
        model=handbook,
        messages=[
            {"role": "user", "content": "Tell me about expenses."},
            {
                "role": "assistant",
                "content": "Expenses are reimbursed within 30 days [1].\n\n**Sources**\n"
                "- [1] `expenses`",
            },
            {"role": "user", "content": "What must be attached to the claim?"},
        ],
    )
    assert "receipts" in (completion.choices[0].message.content or "")
    # The earlier turns went to the LLM to make the last question standalone.
    [condense] = llm.requests
    prompt = json.dumps(condense["json"]["messages"])
    assert "Tell me about expenses." in prompt
    assert "reimbursed within 30 days" in prompt
    assert "Sources" not in prompt  # the list this route adds is not part of what was said


def test_errors_use_the_openai_shape(sdk: openai.OpenAI, handbook: str) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(
            model="no-such-collection", messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as empty:
        sdk.chat.completions.create(
            model=handbook, messages=[{"role": "assistant", "content": "x"}]
        )
    assert empty.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as unknown:
        sdk.chat.completions.create(
            model=f"{handbook}:gpt-9", messages=[{"role": "user", "content": "hi"}]
        )
    assert unknown.value.param == "model"


def test_bad_chat_requests_are_refused_naming_their_field(
    sdk: openai.OpenAI, handbook: str
) -> None:
    """Each was answered: a top_k of 0 as the default 5, an unknown role left out, a text part
    of null asked as "None"; a frontend's task skipped every check (a session id "bad id!",
    top_k 100000); and an over-long question named `query`, which this API has not."""
    question = {"role": "user", "content": "What must laptops use?"}
    task = {
        "role": "user",
        "content": "Title?\nASSISTANT: The documents found do not answer this question.",
    }
    bad: list[tuple[list[dict], dict, str]] = [
        ([question], {"top_k": 0}, "top_k"),
        ([{"role": "wizard", "content": "hi"}, question], {}, "messages[0].role"),
        (
            [{"role": "user", "content": [{"type": "text", "text": None}]}],
            {},
            "messages[0].content",
        ),
        ([{"role": "user", "content": "x" * 16_001}], {}, "messages"),
        ([task], {"session_id": "bad id!"}, "session_id"),
        ([task], {"top_k": 100_000}, "top_k"),
    ]
    for messages, extra, param in bad:
        with pytest.raises(openai.BadRequestError) as refused:
            sdk.chat.completions.create(model=handbook, messages=messages, extra_body=extra)  # type: ignore[arg-type]
        assert refused.value.param == param, (messages, extra, refused.value)
    parts = [{"type": "text", "text": "What must "}, {"type": "text", "text": "laptops use?"}]
    answered = sdk.chat.completions.create(
        model=handbook,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": parts}],  # type: ignore[list-item]
    )
    assert "full-disk encryption" in (answered.choices[0].message.content or "")


def test_the_openai_generator_against_a_real_openai_compatible_server(
    query_stack: NativeStack, handbook: str
) -> None:
    """A second query service whose `openai` generator calls the first one's
    /v1/chat/completions: the SDK's real request, streaming and not, over real HTTP."""
    port, health = free_port(), free_port()
    process = query_stack.start_service(
        "query",
        {
            "PORT": str(port),
            "HEALTH_PORT": str(health),
            "GENERATOR": "openai",
            "GENERATOR_FALLBACK": "",
            "OPENAI_BASE_URL": f"{query_stack.api_url('query')}/v1",
            "OPENAI_MODEL": handbook,
            "OPENAI_API_KEY": "unused",
        },
        name="query-openai",
    )
    try:
        process.wait_until(
            lambda: http_ok(f"http://127.0.0.1:{health}/ready"), timeout=60, what="ready"
        )
        client = QueryClient(f"http://127.0.0.1:{port}")
        result = client.answer(handbook, "What must laptops use?", cache=False)
        # The "model" answers the prompt (sources and question) from the handbook itself,
        # so its answer is handbook sentences with citations.
        assert result["generator"] == "openai"
        assert "laptops" in result["answer"]
        assert "[1]" in result["answer"]
        assert result["usage"]["output_tokens"] > 0
        events = client.stream(handbook, "When does the car park open?", cache=False)
        assert events[-1].event == "done"
        assert events[-1].data["generator"] == "openai"
        streamed = "".join(e.data["text"] for e in events if e.event == "token")
        assert streamed.strip() == events[-1].data["answer"]
        assert len([e for e in events if e.event == "token"]) > 3
        log = (query_stack.log_dir / "query.log").read_text()
        assert log.count('"route": "/v1/chat/completions"') >= 2  # the upstream saw both
    finally:
        process.stop()
