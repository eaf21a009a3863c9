"""A stack of real processes (Redis, Chroma, ingest API, worker, query) with a handbook
collection ingested through the worker, and a local server answering as the LLM APIs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rag_devstack import NativeStack, StackPorts

from tests.support.ingest import IngestClient
from tests.support.query import QueryClient
from tests.support.replay import Replay, replay_server

HANDBOOK = [
    {
        "id": "leave",
        "text": "Annual leave. Staff get 25 days of annual leave per year. Leave requests go "
        "to your line manager at least two weeks ahead.",
        "metadata": {"dept": "hr", "year": 2024},
    },
    {
        "id": "expenses",
        "text": "Expenses. Expenses are reimbursed within 30 days when the receipts are "
        "attached to the claim.",
        "metadata": {"dept": "finance", "year": 2023},
    },
    {
        "id": "laptops",
        "text": "Laptops. Laptops must use full-disk encryption. Report lost or stolen laptops "
        "to the service desk at once.",
        "title": "Laptop policy",
        "source": "https://intranet.example.org/it/laptops",
        "metadata": {"dept": "it", "year": 2024},
    },
    {
        "id": "parking",
        "text": "Parking. The car park opens at 7 am. Bicycles go in the shed by the north "
        "entrance.",
        "metadata": {"dept": "facilities", "year": 2022},
    },
]


@pytest.fixture(scope="package")
def llm() -> Iterator[Replay]:
    """Stands in for OpenAI, Gemini and Cohere; each test scripts its answers."""
    with replay_server((500, "error_500.json")) as replay:
        yield replay


@pytest.fixture(scope="package")
def query_stack(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, llm: Replay
) -> Iterator[NativeStack]:
    stack = NativeStack(
        tmp_path_factory.mktemp("query"),
        StackPorts.free(),
        env={
            "DATA_DIR": str(model_cache),
            "VERSION_GRACE_SECONDS": "2",
            "OPENAI_API_KEY": "sk-test",
            "OPENAI_BASE_URL": f"{llm.url}/v1",
            "GOOGLE_API_KEY": "g-test",
            "GOOGLE_BASE_URL": llm.url,
            "COHERE_API_KEY": "c-test",
            "COHERE_BASE_URL": llm.url,
            "LLM_MAX_RETRIES": "0",
            "LLM_TIMEOUT_SECONDS": "2",
        },
    )
    with stack:
        stack.start(services=["ingest", "query"])
        yield stack


@pytest.fixture(scope="package")
def ingest(query_stack: NativeStack) -> IngestClient:
    return IngestClient(query_stack.api_url("ingest"))


@pytest.fixture(scope="package")
def query(query_stack: NativeStack) -> QueryClient:
    return QueryClient(query_stack.api_url("query"))


@pytest.fixture(scope="module")
def handbook(ingest: IngestClient, query: QueryClient) -> str:
    name = ingest.create_collection()
    jobs = ingest.wait(ingest.ingest_ok(name, HANDBOOK))
    assert {job["state"] for job in jobs} == {"succeeded"}
    query.wait_for(name, "bicycles shed", "parking")
    return name
