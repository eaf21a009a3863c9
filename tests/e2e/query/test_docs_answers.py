"""Offline (extractive) answers over our own documentation, scored by the evaluation API: each
question of bench/docs_questions.jsonl (the set the generator was tuned on) and of
bench/docs_questions_apart.jsonl (written apart from it and the generator) names the one sentence of
README.md or docs/ that answers it, and (``also``) any other file's passage that answers it on
its own. Asked "How are API keys stored?", the answer must hold that sentence (or such a
passage) and cite a file that answers, not headings, table rows or link text.

The gates read a frozen copy of the docs and of the question sets (tests/fixtures/docs_snapshot,
made by ``make docs-snapshot``): the docs are the corpus, and any edit of them, one figure
even, moved the gates by a question or two, so that make test went red on a docs change with
no change of code. bench/quality.py measures the live docs; the sets are checked against both.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.docs_corpus import SNAPSHOT, documentation
from tests.support.ingest import IngestClient
from tests.support.query import QueryClient
from tests.support.replay import Replay

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[3]
QUESTION_SETS = {
    "tuned": SNAPSHOT / "questions" / "docs_questions.jsonl",
    "written_apart": SNAPSHOT / "questions" / "docs_questions_apart.jsonl",
}
BASELINE = ROOT / "tests" / "fixtures" / "quality_baseline.json"


FILES = documentation()
SETS = (
    "docs_questions.jsonl",
    "docs_questions_apart.jsonl",
    "docs_conversations.jsonl",
    "docs_conversations_holdout.jsonl",
)
# Each set as the benches read it, against the live docs, and as the gates do, frozen.
LIVE_AND_FROZEN = [
    pytest.param(ROOT, ROOT / "bench" / name, id=f"live-{name}") for name in SETS
] + [pytest.param(SNAPSHOT, SNAPSHOT / "questions" / name, id=f"frozen-{name}") for name in SETS]


def document_id(path: str) -> str:
    return path.replace("/", ":")  # document ids hold no slash


def _questions(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def expected_answers(case: dict[str, Any]) -> list[str]:
    """Its own file's sentence, and the passage of each other file that answers it."""
    return [case["sentence"], *(other["passage"] for other in case.get("also", []))]


@pytest.mark.parametrize(("root", "path"), LIVE_AND_FROZEN)
def test_every_expected_passage_is_still_in_its_file(root: Path, path: Path) -> None:
    """A set is only as good as its passages: a rewritten doc must update the bench's sets
    (the frozen ones change only with the snapshot)."""
    for case in _questions(path):
        passages = [
            (case["document"], case["passage"] if "turns" in case else case["sentence"]),
            *((other["document"], other["passage"]) for other in case.get("also", [])),
        ]
        for document, passage in passages:
            text = " ".join((root / document).read_text().split())
            fix = "make docs-snapshot" if root == SNAPSHOT else f"update {path.relative_to(ROOT)}"
            assert " ".join(passage.split()) in text, (
                f"{case['id']}: {document} no longer says {passage!r}; {fix}"
            )


def test_the_snapshot_has_every_file_the_live_docs_have() -> None:
    """A file added to docs/ is missing from the gates' corpus until the snapshot is made
    again (``make docs-snapshot``, then the gates re-measured): said here, not found later."""
    live = {f.relative_to(ROOT) for f in documentation(ROOT)}
    frozen = {f.relative_to(SNAPSHOT) for f in FILES}
    assert live == frozen, "run make docs-snapshot, then record the gates' new figures"


@pytest.fixture(scope="module")
def docs(ingest: IngestClient, query: QueryClient) -> str:
    """README.md and docs/ ingested as a collection, one document per file."""
    name = ingest.create_collection("docs-answers")
    jobs = []
    for path in FILES:
        relative = path.relative_to(SNAPSHOT).as_posix()
        response = ingest.upload(
            name, [(path.name, path.read_bytes(), "text/markdown")], id=document_id(relative)
        )
        assert response.status_code == 202, response.text
        jobs += [job["job_id"] for job in response.json()["jobs"]]
    assert {job["state"] for job in ingest.wait(jobs, timeout=240)} == {"succeeded"}
    last = FILES[-1]
    words = re.sub(r"[^\w\s]", " ", last.read_text()).split()
    query.wait_for(name, " ".join(words[:12]), document_id(last.relative_to(SNAPSHOT).as_posix()))
    return name


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", QUESTION_SETS.keys())
def test_extractive_answers_over_the_docs_hold_the_sentence_and_cite_a_file_that_answers(
    name: str, docs: str, query: QueryClient
) -> None:
    questions = _questions(QUESTION_SETS[name])
    cases = [
        {
            "id": case["id"],
            "query": case["query"],
            "relevant": [
                document_id(d)
                for d in (case["document"], *(o["document"] for o in case.get("also", [])))
            ],
            "expected_answer": expected_answers(case),
        }
        for case in questions
    ]
    response = query.http.post(
        "/v1/evaluate",
        json={"collection": docs, "cases": cases, "answers": True, "background": False},
        timeout=240,
    )
    assert response.status_code == 200, response.text
    result = response.json()
    answers = result["answers"]
    missed = [
        (row["id"], row.get("answer_recall"), row.get("answer", "")[:160])
        for row in result["per_case"]
        if (row.get("answer_recall") or 0) < 0.8
    ]
    print(f"docs answers ({name}):", answers, result["retrieval"], "missed:", missed)
    assert answers["answer_support"] >= 0.95, answers  # each sentence is its cited source's
    # The regression gate: no change may cost more than one question's worth of the recorded
    # figures (issue 19's goal for citation precision, 0.95, is not met yet).
    recorded = json.loads(BASELINE.read_text())["docs_answers"][name]
    for measure in ("answered", "citation_precision", "answer_recall"):
        assert answers[measure] >= recorded[measure] - 1 / len(questions) - 1e-9, (
            measure,
            answers,
            missed,
        )


UNANSWERABLE = SNAPSHOT / "questions" / "docs_questions_unanswerable.jsonl"
NOT_ANSWERED = "The documents found do not answer this question."


@pytest.mark.timeout(300)
def test_questions_the_docs_do_not_answer_are_said_not_to_be_answered(
    docs: str, query: QueryClient
) -> None:
    """Asked how long a steak should rest, the offline generator quoted the docs' least
    unrelated sentences and cited them. Of the questions of
    bench/docs_questions_unanswerable.jsonl (written apart from the generator: about this
    product but not answered by its docs, general ones on the subjects it touches, and ones
    from other fields, half of them in the docs' own words), those no sentence comes near are
    answered that the documents do not answer, citing nothing; the answerable sets above must
    all still be answered (their `answered`)."""
    questions = _questions(UNANSWERABLE)
    response = query.http.post(
        "/v1/evaluate",
        json={
            "collection": docs,
            "cases": [{"id": case["id"], "query": case["query"]} for case in questions],
            "answers": True,
            "background": False,
        },
        timeout=240,
    )
    assert response.status_code == 200, response.text
    rows = {row["id"]: row for row in response.json()["per_case"]}
    declined = {case_id for case_id, row in rows.items() if row["answered"] == 0}
    for case_id in declined:
        assert rows[case_id]["answer"] == NOT_ANSWERED, rows[case_id]
    for case_id in set(rows) - declined:
        assert re.search(r"\[\d+\]", rows[case_id]["answer"]), rows[case_id]
    kinds = {case["id"]: case["kind"] for case in questions}
    off_topic = [case_id for case_id, kind in kinds.items() if kind == "off-topic"]
    shares = {
        "declined": len(declined) / len(questions),
        "off_topic_declined": len(declined & set(off_topic)) / len(off_topic),
    }
    print("unanswerable:", shares, "answered:", sorted(set(rows) - declined))
    recorded = json.loads(BASELINE.read_text())["unanswerable"]
    assert shares["declined"] >= recorded["declined"] - 1 / len(questions) - 1e-9, shares
    assert (
        shares["off_topic_declined"] >= recorded["off_topic_declined"] - 1 / len(off_topic) - 1e-9
    ), shares


# The set the method was chosen on, and one written apart and never tuned on.
CONVERSATION_SETS = {
    "tuned": SNAPSHOT / "questions" / "docs_conversations.jsonl",
    "held_out": SNAPSHOT / "questions" / "docs_conversations_holdout.jsonl",
}


def _flat(text: str) -> str:
    return " ".join(text.split())


def _conversations(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", CONVERSATION_SETS.keys())
def test_follow_up_questions_are_searched_with_the_conversation(
    name: str, docs: str, query: QueryClient, llm: Replay
) -> None:
    """After "How are API keys stored?", "And how do I revoke one?" retrieved text about
    chat sessions: only the last message was searched. Each conversation of a set is held
    as a chat client holds it (the answers sent back, with their lists of sources) through
    the OpenAI SDK; its last turn's five sources must hold the passage that answers it
    (hit@5), asked alone (before) and in the conversation."""
    # This stack has an LLM stand-in, shared with other tests, that would condense the
    # conversation with whatever it was last told to say: here it fails, and the service
    # searches as it does with no LLM at all.
    llm.script((500, "error_500.json"))
    sdk = openai.OpenAI(base_url=f"{query.base_url}/v1", api_key="unused", max_retries=0)

    def sources(messages: list[dict[str, str]]) -> list[dict[str, Any]]:
        reply = sdk.chat.completions.create(
            model=docs,
            messages=messages,
            extra_body={"top_k": 5},  # type: ignore[arg-type]
        )
        messages.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
        found: list[dict[str, Any]] = (reply.model_extra or {})["sources"]
        return found

    alone = together = 0
    missed = []
    cases = _conversations(CONVERSATION_SETS[name])
    for case in cases:
        passage = _flat(case["passage"])
        messages: list[dict[str, str]] = []
        for turn in case["turns"]:
            messages.append({"role": "user", "content": turn})
            found = sources(messages)
        hit = any(passage in _flat(s["quote"]) for s in found)
        together += hit
        last = [{"role": "user", "content": case["turns"][-1]}]
        alone += any(passage in _flat(s["quote"]) for s in sources(last))
        if not hit:
            missed.append((case["id"], case["turns"][-1], [s["document_id"] for s in found]))
    before, after = alone / len(cases), together / len(cases)
    print(
        f"follow-up hit@5 ({name}): alone {before:.3f}, in the conversation {after:.3f}; "
        f"missed {missed}"
    )
    assert after > before
    recorded = json.loads(BASELINE.read_text())["follow_ups"][name]
    assert after >= recorded - 1 / len(cases), (after, missed)
