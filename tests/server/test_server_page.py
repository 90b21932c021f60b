"""The web page at ``/`` in headless Chromium: type texts, click, see the engine's scores; screenshot.

Needs a Chromium binary (Debian: ``apt-get install chromium``; or ``$BGE_RAG_CHROMIUM``); the
browser is driven by Playwright's Python package and never downloads anything.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from _server_support import CHROMIUM_ARGS, find_chromium, m3_embedder, reranker, serve, serve_engines

from bge_core import Embedder
from bge_rag.server import create_app

CHROMIUM = find_chromium()
if CHROMIUM is None and os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):  # CI never skips it
    pytest.fail(
        "CI: no Chromium binary, so the web page test cannot run: apt-get install chromium, "
        "or set BGE_RAG_CHROMIUM to one",
        pytrace=False,
    )
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        CHROMIUM is None, reason="no Chromium binary: apt-get install chromium, or set BGE_RAG_CHROMIUM to one"
    ),
]

QUERY = "giant panda species"
DOCUMENTS = [
    "The giant panda is a bear species endemic to China.",
    "pandas is a Python library for data analysis.",
    "Paris is the capital and most populous city of France.",
]


@pytest.fixture(scope="module")
def engines(models):
    return m3_embedder(models, max_length=64), reranker(models, max_length=64)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1100, "height": 760})
    # Loopback only: anything else the page asked for would fail the test instead of leaving the machine.
    blocked: list[str] = []

    def only_local(route) -> None:
        if route.request.url.startswith(url):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(f"{url}/")
    return page, blocked


def _column(page, name: str) -> list[float]:
    return [float(text) for text in page.locator(f"#results-body td.{name}").all_inner_texts()]


def test_page_shows_the_engines_scores(engines, browser, tmp_path):
    embedder, rr = engines
    with serve_engines(embedder, rr) as url:
        page, blocked = _open(browser, url)
        page.wait_for_function("document.getElementById('model-info').textContent.includes('Embeddings:')")
        assert "dense + sparse + colbert" in page.inner_text("#model-info")
        page.fill("#query", QUERY)
        page.fill("#documents", "\n".join(DOCUMENTS))
        page.click("#compare")
        page.wait_for_selector("#results:not([hidden])")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Scored')")
        screenshot = tmp_path / "page.png"
        page.screenshot(path=str(screenshot), full_page=True)

        q = embedder.encode([QUERY], kind="query", sparse=True)
        d = embedder.encode(DOCUMENTS, kind="document", sparse=True)
        dense = d.dense @ q.dense[0]
        lexical = [q.sparse[0].dot(v) for v in d.sparse]
        rerank = rr.score([(QUERY, doc) for doc in DOCUMENTS], normalize=True)
        assert max(lexical) > 0  # the example texts share weighted tokens
        np.testing.assert_allclose(_column(page, "dense"), dense, atol=6e-5, rtol=0)
        np.testing.assert_allclose(_column(page, "lexical"), lexical, atol=6e-5, rtol=0)
        np.testing.assert_allclose(_column(page, "rerank"), rerank, atol=6e-5, rtol=0)
        assert page.locator("#results-body td.doc").all_inner_texts()[0].startswith(DOCUMENTS[0])
        best = max(range(3), key=lambda i: rerank[i])
        assert page.locator("#results-body tr.best").get_attribute("data-index") == str(best)
        heaviest = embedder.decode_sparse(q.sparse[0], 1)[0][0]
        assert heaviest in page.inner_text("#query-tokens")
        assert blocked == []
        page.close()
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_page_asks_for_the_api_key(engines, browser):
    embedder, _ = engines
    with serve_engines(embedder, api_key="page-key") as url:
        page, _ = _open(browser, url)
        page.wait_for_selector("#key-box:not([hidden])")
        assert "needs an API key" in page.inner_text("#model-info")
        page.click("#compare")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('401')")
        page.fill("#api-key", "page-key")
        page.click("#compare")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Scored')")
        assert len(_column(page, "dense")) == 3 and page.locator("td.rerank").count() == 0
        page.close()


def test_page_lets_the_user_pick_a_model(engines, models, browser):
    """With two embedding models, the page offers both and scores with the one picked."""
    m3, rr = engines
    dense = Embedder(models.dense, precision="fp32", max_length=64)
    with serve(create_app({"m3": m3, "minilm": dense}, rr)) as url:
        page, blocked = _open(browser, url)
        page.wait_for_selector("#embedding-model-box:not([hidden])")
        assert page.locator("#reranker-model-box").is_hidden()  # one reranker: nothing to pick
        assert page.locator("#embedding-model option").all_inner_texts() == ["m3", "minilm"]
        assert "Embeddings: m3" in page.inner_text("#model-info")
        page.select_option("#embedding-model", "minilm")
        page.wait_for_function("document.getElementById('model-info').textContent.includes('Embeddings: minilm')")
        page.fill("#query", QUERY)
        page.fill("#documents", "\n".join(DOCUMENTS))
        page.click("#compare")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Scored')")
        expected = dense.encode_documents(DOCUMENTS) @ dense.encode_queries(QUERY)
        np.testing.assert_allclose(_column(page, "dense"), expected, atol=6e-5, rtol=0)
        assert page.locator("td.lexical").count() == 0  # minilm has no sparse head
        assert blocked == []
        page.close()
