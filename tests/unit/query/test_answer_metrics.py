from __future__ import annotations

from rag_config import QuerySettings
from rag_query.answers.service import AnswerOptions, _cache_params
from rag_query.evaluation.metrics import answer_recall, answer_support, fuzzy_match
from rag_query.generation.extractive import NOT_ANSWERED
from rag_query.retrieval.analyzer import Analyzer
from rag_query.retrieval.search import SearchRequest

EXPECTED = "Redis keeps only a SHA-256 of the secret."


def test_answer_recall_counts_the_expected_sentence_inside_a_longer_answer() -> None:
    answer = (
        "Every request needs a credential. [1] Redis keeps only a SHA-256 of the secret; the "
        "key is shown once. [2]"
    )
    assert answer_recall(answer, EXPECTED, Analyzer()) == 1.0
    assert fuzzy_match(answer, EXPECTED) <= 0.6  # F1 punishes the other sentence


def test_answer_recall_is_the_share_of_expected_terms_held() -> None:
    # Terms of the expected answer: redi(s), keep, onli, sha, 256, secret: six.
    assert answer_recall("The secret is hashed with SHA-256.", EXPECTED, Analyzer()) == 3 / 6
    assert answer_recall("Nothing relevant here.", EXPECTED, Analyzer()) == 0.0
    assert answer_recall("anything", "[1] the", Analyzer()) is None  # nothing to recall


def test_a_code_block_is_judged_with_the_sentence_that_introduces_it() -> None:
    """A command after "To revoke a key: [1]" counted as a sentence citing nothing."""
    source = {1: "To revoke a key:\n\n```bash\nrag keys revoke 42\n```"}
    answer = "To revoke a key: [1]\n\n```bash\nrag keys revoke 42\n```"
    assert answer_support(answer, source, Analyzer()) == 1.0
    # Its words must still be the cited source's.
    forged = "To revoke a key: [1]\n\n```bash\ncurl -X DELETE evil.example/all-tenants\n```"
    assert answer_support(forged, source, Analyzer()) == 0.0


def test_several_expected_answers_score_the_best_of_each_measure() -> None:
    from rag_query.evaluation.metrics import against_expected, exact_match

    analyzer = Analyzer()
    answer = "The secret is hashed with SHA-256. [1]"
    others = ["Bananas grow in warm places.", "The secret is hashed with SHA-256.", "[1] the"]
    scores = against_expected(answer, others, analyzer)
    for measure, one in (
        ("exact_match", exact_match),
        ("fuzzy_match", fuzzy_match),
        ("answer_recall", lambda a, e: answer_recall(a, e, analyzer)),
    ):
        each = [v for e in others if (v := one(answer, e)) is not None]
        assert scores[measure] == max(each), measure
    assert scores["exact_match"] == 1.0  # whichever place the right one has
    assert against_expected(answer, others[::-1], analyzer) == scores
    assert against_expected(answer, [], analyzer) == dict.fromkeys(scores)
    assert against_expected(answer, ["[1] the"], analyzer)["answer_recall"] is None


def test_an_answer_cached_under_other_extractive_settings_is_not_found() -> None:
    """The cache key held nothing of the offline generator's settings: after
    EXTRACTIVE_MIN_SIMILARITY (or EXTRACTIVE_EMBED_SENTENCES) changed, a question asked before
    got the answer the generator would no longer give until it expired."""
    options = AnswerOptions(search=SearchRequest(query="How many days of leave?"))
    shipped = _cache_params(options, "extractive", QuerySettings(_env_file=None))
    assert shipped == _cache_params(options, "extractive", QuerySettings(_env_file=None))
    for changed in (
        {"extractive_min_similarity": 0.4},
        {"extractive_embed_sentences": 0},
        {"answer_not_answered": "Les documents ne répondent pas."},
    ):
        settings = QuerySettings(_env_file=None, **changed)  # type: ignore[arg-type]
        assert _cache_params(options, "extractive", settings) != shipped, changed


def test_the_answer_that_the_documents_do_not_answer_claims_nothing_to_support() -> None:
    """It cites nothing, and is no claim a source should hold: not judged (it scored 0)."""
    assert answer_support(NOT_ANSWERED, {1: "Staff get 25 days."}, Analyzer()) is None
    # Nor are the operator's own texts (ANSWER_NOT_ANSWERED, ANSWER_NO_DOCUMENTS), of any
    # number of sentences: the no-documents answer scored 0.
    settings = QuerySettings(_env_file=None, answer_not_answered="Rien ici. Désolé.")
    no_claims = (settings.answer_not_answered, settings.answer_no_documents)
    for text in no_claims:
        assert answer_support(text, {}, Analyzer(), no_claims) is None
    assert answer_support("Rien ici. Désolé.", {}, Analyzer()) == 0.0  # not the default's
    answer = "Staff get 25 days. [1]"
    assert answer_support(answer, {1: "Staff get 25 days."}, Analyzer()) == 1.0


def test_the_default_not_answered_text_is_the_generators() -> None:
    """The generator's own default (for its other callers: the labs, the tests) and the
    setting's are one text."""
    assert QuerySettings(_env_file=None).answer_not_answered == NOT_ANSWERED


def test_a_task_quoting_an_answer_that_cites_nothing_is_known_by_the_operators_text() -> None:
    """A frontend's title task quoting the answer that the documents do not answer is told
    apart from a question by that answer's text: the operator's (ANSWER_NOT_ANSWERED), and
    the no-documents answer too (it was searched as a question)."""
    from rag_query.openai_api.conversation_tasks import about_the_conversation

    settings = QuerySettings(_env_file=None, answer_not_answered="Rien ne répond ici.")
    no_claims = (settings.answer_not_answered, settings.answer_no_documents)
    for answer in no_claims:
        task = f"Titre de cette conversation ?\nUSER: Et le télétravail ?\nASSISTANT: {answer}"
        assert about_the_conversation(task, no_claims)
        assert not about_the_conversation(task)  # the default texts only
    assert not about_the_conversation("Et le télétravail ?", no_claims)
