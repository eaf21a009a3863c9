"""The playground page in a real browser (Debian's Chromium, driven by Playwright), through
nginx: a key, a collection, uploads with their jobs' progress and failure reasons, a streamed
answer whose citation shows its passage, the page at phone width, and its labels.

Chromium comes from Debian (deploy/scripts/setup.sh installs it), never from `playwright
install`; without it, or without the playwright package, this test fails rather than skips."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from rag_devstack import NativeStack

from tests.e2e.gateway.conftest import Edge
from tests.support.documents import make_pdf

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
GUIDE = b"""# Skerry Point lighthouse

The Skerry Point lighthouse lamp is lit every evening at dusk by the keeper.

The keeper refills the paraffin tank every Tuesday morning before breakfast.

Visitors may climb the tower on Saturdays between ten and noon.
"""
QUESTION = "When does the keeper refill the paraffin tank?"
FINAL_STATES = ("succeeded", "failed", "dead", "refused")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(
            "the playwright package is missing: `uv sync --all-packages` installs the dev group"
        )
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `apt-get install chromium` (deploy/scripts/setup.sh does it)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield launched
        finally:
            launched.close()


def _final_upload_state(page: Page, name: str) -> str:
    row = page.locator("#uploads li", has_text=name)
    page.wait_for_function(
        """([name, finals]) => [...document.querySelectorAll('#uploads li')].some(
               (li) => li.textContent.includes(name) && finals.includes(li.dataset.state))""",
        arg=[name, list(FINAL_STATES)],
        timeout=90_000,
    )
    state: str = row.get_attribute("data-state") or ""
    return state


def test_the_playground_in_chromium(
    browser: Browser, edge: Edge, full_stack: NativeStack, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    key = edge.new_key("playground", ["ingest:write", "query:read"], name="playground test")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    requests: list[str] = []
    console_errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on(
        "console",
        lambda message: console_errors.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: console_errors.append(str(error)))

    # The page, without credentials, under a strict policy.
    opened = page.goto(edge.url + "/")
    assert opened is not None
    assert opened.status == 200
    assert opened.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in opened.headers["content-security-policy"]
    expect(page.locator("body")).to_have_attribute("data-ready", "true")  # the module ran

    # A key, then a wrong collection name (problem details), then a good one.
    page.get_by_role("textbox", name="API key", exact=True).fill(key)
    page.get_by_role("button", name="Use key", exact=True).click()
    expect(page.locator("#key-status")).to_have_text("Key in use for this tab.")
    # The API reference (Swagger UI, scripts from a CDN) opens in a tab of its own, which does
    # not hold the key: opened in this tab, its scripts could read this tab's sessionStorage.
    with context.expect_page() as opened_reference:
        page.get_by_role("link", name="API reference", exact=True).click()
    reference = opened_reference.value
    reference.wait_for_load_state("domcontentloaded")
    assert reference.url.endswith("/schema")
    assert reference.evaluate("() => sessionStorage.length") == 0
    reference.close()
    page.get_by_role("textbox", name="New collection name", exact=True).fill("Not A Name!")
    page.get_by_role("button", name="Create collection", exact=True).click()
    problem = page.get_by_role("alert")
    expect(problem).to_be_visible()
    expect(problem.locator("#problem-title")).to_contain_text("(4")  # e.g. "Invalid input (422)"
    expect(problem.locator("#problem-detail")).to_contain_text("not allowed")
    page.get_by_role("textbox", name="New collection name", exact=True).fill("lighthouse")
    page.get_by_role("button", name="Create collection", exact=True).click()
    expect(problem).to_be_hidden()
    expect(page.get_by_role("combobox", name="Collection", exact=True)).to_have_value("lighthouse")

    # Two files through the file input: one is answered from, one fails with its reason.
    page.get_by_label("Files to upload", exact=True).set_input_files(
        [
            {"name": "lighthouse.md", "mimeType": "text/markdown", "buffer": GUIDE},
            {
                "name": "locked.pdf",
                "mimeType": "application/pdf",
                "buffer": make_pdf(["Nothing to see."], password="secret"),
            },
        ]
    )
    page.get_by_role("button", name="Upload", exact=True).click()
    good = _final_upload_state(page, "lighthouse.md")
    assert good == "succeeded", page.locator("#uploads").inner_text()
    assert _final_upload_state(page, "locked.pdf") == "failed"
    expect(page.locator("#uploads li", has_text="locked.pdf").locator(".error")).to_contain_text(
        "encrypted"
    )
    # The jobs view lists both, with the failure reason.
    page.get_by_role("button", name="Refresh jobs", exact=True).click()
    jobs = page.locator("#jobs")
    expect(jobs.locator("li[data-state=succeeded]", has_text="lighthouse.md")).to_be_visible()
    expect(jobs.locator("li[data-state=failed]", has_text="locked.pdf")).to_contain_text(
        "encrypted"
    )

    # Every query replica behind nginx has the document before the question is asked.
    edge.wait_searchable("lighthouse", "paraffin tank", edge.bearer(key))

    # The answer streams into the live region, citing the guide.
    page.evaluate(
        """() => {
            window.answerMutations = 0;
            new MutationObserver((records) => { window.answerMutations += records.length; })
                .observe(document.getElementById('answer'), {childList: true, subtree: true});
        }"""
    )
    page.get_by_role("textbox", name="Question", exact=True).fill(QUESTION)
    with page.expect_response(lambda r: r.url.endswith("/v1/collections/lighthouse/query")) as sent:
        page.get_by_role("button", name="Ask", exact=True).click()
    assert sent.value.headers["content-type"].startswith("text/event-stream")
    expect(page.locator("#answer-status")).to_contain_text("Done:", timeout=60_000)
    answer = page.locator("#answer")
    expect(answer).to_have_attribute("aria-live", "polite")
    expect(answer).to_contain_text("Tuesday")
    assert page.evaluate("window.answerMutations") > 3  # appended piece by piece
    citations = answer.locator("button.cite")
    assert citations.count() >= 1
    expect(page.locator("#sources li")).not_to_have_count(0)

    # A citation shows its passage, and takes the focus there.
    citations.first.click()
    passage = page.locator("#passage")
    expect(passage).to_be_visible()
    expect(passage).to_be_focused()
    expect(page.locator("#passage-quote")).to_contain_text("paraffin tank every Tuesday")
    expect(citations.first).to_have_attribute("aria-expanded", "true")

    # Keyboard: the sources are buttons; Enter opens one; focus is visible.
    page.locator("#sources button").first.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), outline
    page.keyboard.press("Enter")
    expect(passage).to_be_focused()

    # Every form control has a label that names it.
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea')]
            .filter((el) => ![...el.labels].some((l) => l.textContent.trim())
                && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby'))
            .map((el) => el.outerHTML)"""
    )
    assert unlabelled == []
    for role, name in (
        ("textbox", "API key"),
        ("textbox", "New collection name"),
        ("combobox", "Collection"),
        ("textbox", "Question"),
        ("button", "Files to upload"),  # Chromium exposes a file input as a button
    ):
        expect(page.get_by_role(role, name=name, exact=True)).to_have_count(1)
    assert page.locator("[onclick], div[role=button], span[role=button]").count() == 0

    shots = [tmp_path / "playground.png", tmp_path / "playground-375.png"]
    page.screenshot(path=str(shots[0]), full_page=True)

    # A phone's width: no horizontal scrolling, everything still there.
    page.set_viewport_size({"width": 375, "height": 800})
    overflow = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert overflow[0] <= overflow[1], f"the page is {overflow[0]}px wide at 375px"
    page.screenshot(path=str(shots[1]), full_page=True)
    artifacts = REPO_ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    for shot in shots:
        shutil.copy(shot, artifacts / shot.name)

    # Nothing but this origin was asked for, and nothing was refused or thrown.
    others = [url for url in requests if not url.startswith(edge.url + "/")]
    assert others == []
    assert _no_problems(console_errors) == [], console_errors
    context.close()


def _no_problems(errors: list[Any]) -> list[Any]:
    """Console errors, less Chromium's note of the 4xx the bad collection name was answered
    with on purpose."""
    return [e for e in errors if "status of 4" not in str(e)]
