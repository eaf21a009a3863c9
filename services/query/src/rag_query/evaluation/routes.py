"""POST /v1/evaluate (cases as JSON), POST /v1/evaluate/beir (BEIR queries.jsonl and
qrels .tsv files), GET /v1/evaluations/{id} (one running in the background)."""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Sized
from typing import Any, Literal, Self

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED
from rag_config import QuerySettings
from rag_core.errors import InvalidInput, NotFound
from rag_core.tenancy import tenant_of

from rag_query.answers.generators import Generators
from rag_query.evaluation.service import Case, EvaluationJobs, EvaluationRecord, Evaluator, Plan
from rag_query.retrieval.routes import SearchBody, search_request

_LINE_END = re.compile(r"\r\n?|\n")
MODES = ("hybrid", "dense", "lexical")
MAX_CASE_ID_CHARS = 256
_GRADE = re.compile(r"-?[0-9]{1,10}")  # a qrels line's last field (str.isdigit takes "²")


class EvalCase(msgspec.Struct, forbid_unknown_fields=True):
    query: str
    id: str | None = None
    relevant: list[str] | dict[str, int] | None = None
    # One answer, or several that are each right (scored against the best of them).
    expected_answer: str | list[str] | None = None


class EvaluateBody(msgspec.Struct, forbid_unknown_fields=True):
    collection: str
    cases: list[EvalCase]
    top_k: int = 10
    mode: Literal["hybrid", "dense", "lexical"] | None = None
    answers: bool = False
    generator: Literal["extractive", "openai", "google"] | None = None
    judge: bool = False
    background: bool | None = None


class CaseResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One case: the documents retrieved and, with `answers`, the answer and its scores (each
    only when it applies) or why there is none."""

    id: str
    retrieved: list[str]
    answer: str | None = None
    answer_error: str | None = None
    answered: float | None = None
    citation_precision: float | None = None
    answer_support: float | None = None
    exact_match: float | None = None
    fuzzy_match: float | None = None
    answer_recall: float | None = None
    faithfulness: float | None = None


class AnswerScores(msgspec.Struct):
    """Each answer measure's mean over the cases it applies to (null when none); `answered`:
    the share of answers citing a source (the offline generator's answer that the documents
    do not answer cites none, and so does an LLM's answer without citations), over which
    citation precision is taken."""

    answered: float | None
    citation_precision: float | None
    answer_support: float | None
    exact_match: float | None
    fuzzy_match: float | None
    answer_recall: float | None
    faithfulness: float | None


class EvaluationResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    collection: str
    cases: int
    judged_cases: int
    retrieval: dict[str, float]  # measure -> mean over the judged cases (nDCG@10, R@10...)
    seconds: float
    per_case: list[CaseResult]
    answers: AnswerScores | None = None  # with `answers`


class EvaluationOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An evaluation running in the background: its progress, then its result or error."""

    id: str
    state: Literal["running", "succeeded", "failed"]
    progress: float
    created_at: float
    updated_at: float
    collection: str
    cases: int
    result: EvaluationResult | None = None
    error: str | None = None

    @classmethod
    def of(cls, record: EvaluationRecord) -> Self:
        return msgspec.convert(msgspec.to_builtins(record), cls)


class EvaluationStarted(EvaluationOut, kw_only=True):
    status_url: str


def _check_count(cases: Sized, settings: QuerySettings) -> None:
    if not cases:
        raise InvalidInput.for_field("cases", "no cases")
    if len(cases) > settings.eval_max_cases:
        raise InvalidInput.for_field(
            "cases", f"more than {settings.eval_max_cases} (EVAL_MAX_CASES)"
        )


def _grade_refused(grade: int, settings: QuerySettings) -> str | None:
    """Why a judgement's relevance grade is refused, if it is: trec_eval takes memory in
    proportion to the highest (3,000,000,000 took the query service down), and one over a C
    int crashed it. A negative grade that is not refused counts as 0 (``_scored``)."""
    if abs(grade) > settings.eval_max_grade:
        return (
            f"relevance grade {grade}: allowed -{settings.eval_max_grade} to "
            f"{settings.eval_max_grade} (EVAL_MAX_GRADE)"
        )
    return None


def _scored(grade: int) -> int:
    """A negative grade (TREC's -2 for junk) as 0, not relevant: as trec_eval counts it, and
    a case judged only below -1 crashed trec_eval (SIGSEGV) after any other evaluation."""
    return max(grade, 0)


def _cases(cases: list[EvalCase], settings: QuerySettings) -> list[Case]:
    """The cases checked in order, once there are not too many: the first bad field of the
    first bad case is named."""
    _check_count(cases, settings)
    checked = []
    for index, case in enumerate(cases):
        where = f"cases[{index}]"
        if not case.query.strip():
            raise InvalidInput.for_field(f"{where}.query", "must not be empty")
        expected = case.expected_answer
        listed = isinstance(expected, list)
        answers: tuple[str, ...] = (
            tuple(expected)
            if isinstance(expected, list)
            else ()
            if expected is None
            else (expected,)
        )
        if listed and not answers:
            raise InvalidInput.for_field(
                f"{where}.expected_answer", "no answers: leave it out, or give one or more"
            )
        if len(answers) > settings.eval_max_expected_answers:
            raise InvalidInput.for_field(
                f"{where}.expected_answer",
                f"more than {settings.eval_max_expected_answers} answers "
                "(EVAL_MAX_EXPECTED_ANSWERS)",
            )
        for number, answer in enumerate(answers):
            if not answer.strip():
                field = f"{where}.expected_answer" + (f"[{number}]" if listed else "")
                raise InvalidInput.for_field(field, "must not be empty")
        relevant = (
            dict.fromkeys(case.relevant, 1)
            if isinstance(case.relevant, list)
            else dict(case.relevant or {})
        )
        for document, grade in relevant.items():
            if refused := _grade_refused(grade, settings):
                raise InvalidInput.for_field(f"{where}.relevant", f"{document!r}: {refused}")
            relevant[document] = _scored(grade)
        checked.append(
            Case(
                id=case.id or f"q{index + 1}",
                query=case.query,
                relevant=relevant,
                expected_answers=answers,
            )
        )
    return checked


def _plan(
    collection: str,
    cases: list[Case],
    *,
    top_k: int,
    mode: str | None,
    answers: bool,
    generator: str | None,
    judge: bool,
    settings: QuerySettings,
    generators: Generators,
) -> Plan:
    _check_count(cases, settings)
    if mode is not None and mode not in MODES:
        raise InvalidInput.for_field("mode", f"allowed: {', '.join(MODES)}")
    first: dict[str, int] = {}
    for index, case in enumerate(cases):
        where = f"cases[{index}]"
        if not case.query.strip():
            raise InvalidInput.for_field(f"{where}.query", "must not be empty")
        if len(case.query) > settings.max_query_chars:
            raise InvalidInput.for_field(
                f"{where}.query",
                f"longer than {settings.max_query_chars} characters (MAX_QUERY_CHARS)",
            )
        # Scored by id (trec_eval reads it up to a NUL): two cases of one id were scored as
        # one, and "\u0000" as "".
        if not 1 <= len(case.id) <= MAX_CASE_ID_CHARS or any(
            unicodedata.category(ch).startswith("C") for ch in case.id
        ):
            raise InvalidInput.for_field(
                f"{where}.id",
                f"1-{MAX_CASE_ID_CHARS} characters, none of them control or invisible",
            )
        if case.id in first:
            raise InvalidInput.for_field(
                f"{where}.id", f"{case.id!r} is cases[{first[case.id]}]'s id too"
            )
        first[case.id] = index
    if answers:
        generators.check(generator or settings.generator)
    if judge and generators.language_model(generator) is None:
        raise InvalidInput.for_field(
            "judge", "faithfulness needs an LLM (OPENAI_API_KEY, OPENAI_BASE_URL or GOOGLE_API_KEY)"
        )
    search = search_request(SearchBody(query="x", top_k=top_k, mode=mode), settings)  # type: ignore[arg-type]
    return Plan(collection, cases, search, answers, generator, judge)


async def _respond(
    plan: Plan,
    background: bool | None,
    request: Request[Any, Any, Any],
    evaluator: Evaluator,
    jobs: EvaluationJobs,
    settings: QuerySettings,
) -> Response[EvaluationResult] | Response[EvaluationStarted]:
    namespace = tenant_of(request)
    if background or (background is None and len(plan.cases) > settings.eval_sync_max_cases):
        record = await jobs.start(plan, namespace)
        started = msgspec.convert(
            {**msgspec.to_builtins(record), "status_url": f"/v1/evaluations/{record.id}"},
            EvaluationStarted,
        )
        return Response(started, status_code=HTTP_202_ACCEPTED)
    if len(plan.cases) > settings.eval_sync_max_cases:  # "background": false
        result = await jobs.run_held(plan, namespace)
    else:
        result = await evaluator.run(plan, namespace)
    return Response(msgspec.convert(result, EvaluationResult), status_code=HTTP_200_OK)


# Both evaluation routes answer the result (200) or, in the background, where to follow it.
EVALUATION_RESPONSES = {
    HTTP_200_OK: ResponseSpec(
        EvaluationResult, description="The evaluation's result", generate_examples=False
    ),
    HTTP_202_ACCEPTED: ResponseSpec(
        EvaluationStarted,
        description="Running in the background: follow `status_url`",
        generate_examples=False,
    ),
}


class EvaluationController(Controller):
    path = "/v1"
    tags = ["evaluation"]

    @post(
        "/evaluate",
        status_code=HTTP_200_OK,
        summary="Evaluate retrieval (and answers) on test cases",
        responses=EVALUATION_RESPONSES,
    )
    async def evaluate(
        self,
        data: JSONBody[EvaluateBody],
        request: Request[Any, Any, Any],
        evaluator: NamedDependency[Evaluator],
        evaluations: NamedDependency[EvaluationJobs],
        generators: NamedDependency[Generators],
        settings: NamedDependency[QuerySettings],
    ) -> Response[EvaluationResult] | Response[EvaluationStarted]:
        """Each case: a `query`, the `relevant` document ids (a list, or ids to graded
        relevance) and/or an `expected_answer` (or a list of answers each right on its own:
        the answer scores its best against them). Retrieval: nDCG@10, R@10, R@100, MRR@10
        (ir-measures). With `answers`: citation precision, answer support, exact and fuzzy
        match, answer recall (the share of the expected answer's words the answer holds) and
        (with `judge` and an LLM) faithfulness. More than EVAL_SYNC_MAX_CASES
        cases (or `background: true`): 202, and the result at the status URL; 429 while the
        tenant runs MAX_EVALUATIONS_PER_TENANT in the background already."""
        cases = _cases(data.cases, settings)
        plan = _plan(
            data.collection,
            cases,
            top_k=data.top_k,
            mode=data.mode,
            answers=data.answers,
            generator=data.generator,
            judge=data.judge,
            settings=settings,
            generators=generators,
        )
        return await _respond(plan, data.background, request, evaluator, evaluations, settings)

    @post(
        "/evaluate/beir",
        status_code=HTTP_200_OK,
        summary="Evaluate with BEIR files (queries.jsonl, qrels .tsv)",
        responses=EVALUATION_RESPONSES,
    )
    async def evaluate_beir(
        self,
        request: Request[Any, Any, Any],
        evaluator: NamedDependency[Evaluator],
        evaluations: NamedDependency[EvaluationJobs],
        generators: NamedDependency[Generators],
        settings: NamedDependency[QuerySettings],
    ) -> Response[EvaluationResult] | Response[EvaluationStarted]:
        """multipart/form-data: `collection`, `queries` (BEIR queries.jsonl: `_id`, `text`),
        `qrels` (BEIR .tsv: query-id, corpus-id, score, with a header); optional `top_k`,
        `mode`, `answers`, `background`. Only queries that have judgements are evaluated;
        document ids are the collection's document ids."""
        form = await request.form()
        collection = form.get("collection")
        if not isinstance(collection, str) or not collection:
            raise InvalidInput.for_field("collection", "missing")
        queries = await _read(form.get("queries"), "queries")
        qrels = await _read(form.get("qrels"), "qrels")
        judgements: dict[str, dict[str, int]] = {}
        # Fields as written: a corpus id may start with a quote ('"Heroes"_(album)'), which
        # the csv module's default quoting took for one and dropped.
        try:
            lines = io.StringIO("\n".join(_LINE_END.split(qrels)))  # CRLF and CR files too
            rows = [r for r in csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE) if r]
        except csv.Error as exc:  # a field over the csv module's limit
            raise InvalidInput.for_field("qrels", f"not a TSV file: {exc}") from None
        for number, row in enumerate(
            rows[1:] if rows and not _GRADE.fullmatch(rows[0][-1]) else rows, start=1
        ):
            if len(row) < 3 or not _GRADE.fullmatch(row[-1]):
                raise InvalidInput.for_field(
                    "qrels", f"line {number}: expected query-id, corpus-id, score"
                )
            if refused := _grade_refused(int(row[-1]), settings):
                raise InvalidInput.for_field("qrels", f"line {number}: {refused}")
            judgements.setdefault(row[0], {})[row[1]] = _scored(int(row[-1]))
        if not judgements:
            raise InvalidInput.for_field(
                "qrels", "no judgements (query-id, corpus-id, score per line)"
            )
        cases_by_id: dict[str, Case] = {}
        # Lines end at a newline or carriage return: splitlines() also split at U+2028 and
        # others, which JSON allows inside a string (a raw CR or LF it does not).
        for number, line in enumerate(_LINE_END.split(queries), start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                query_id, text = item["_id"], item["text"]
                if isinstance(query_id, int) and not isinstance(query_id, bool):
                    query_id = str(query_id)
                if not isinstance(query_id, str) or not isinstance(text, str):
                    raise TypeError
                (query_id + text).encode()  # a lone surrogate ("\ud800") is no text
            except (ValueError, KeyError, TypeError):
                raise InvalidInput.for_field(
                    "queries",
                    f"line {number}: expected a JSON object with _id and text, both text",
                ) from None
            if query_id in cases_by_id:
                raise InvalidInput.for_field("queries", f"line {number}: _id {query_id!r} again")
            if query_id in judgements:
                cases_by_id[query_id] = Case(query_id, text, judgements[query_id])
        cases = list(cases_by_id.values())
        plan = _plan(
            collection,
            cases,
            top_k=_number(form, "top_k", 10),
            mode=_field(form, "mode"),
            answers=_field(form, "answers") == "true",
            generator=_field(form, "generator"),
            judge=_field(form, "judge") == "true",
            settings=settings,
            generators=generators,
        )
        background = {"true": True, "false": False}.get(_field(form, "background") or "")
        return await _respond(plan, background, request, evaluator, evaluations, settings)

    @get("/evaluations/{evaluation_id:str}", summary="An evaluation running in the background")
    async def evaluation(
        self,
        evaluation_id: FromPath[str],
        request: Request[Any, Any, Any],
        evaluations: NamedDependency[EvaluationJobs],
    ) -> EvaluationOut:
        record = await evaluations.get(tenant_of(request), evaluation_id)
        if record is None:
            raise NotFound(f"evaluation {evaluation_id!r} does not exist (or has expired)")
        return EvaluationOut.of(record)


async def _read(upload: Any, field: str) -> str:
    if not isinstance(upload, UploadFile):
        raise InvalidInput.for_field(field, "send it as a file in the form")
    try:
        return (await upload.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput.for_field(field, "not UTF-8 text") from None


def _field(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) and value else None


def _number(form: Any, name: str, default: int) -> int:
    value = _field(form, name)
    if value is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", value):  # str.isdigit takes "²"
        raise InvalidInput.for_field(name, "must be a whole number")
    return int(value)
