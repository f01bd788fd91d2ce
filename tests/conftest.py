"""Shared fixtures: real documents from ../shared beside the checkout."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
REPORT = CORPUS / "reports" / "hai-duong-2022-h1-bao-cao-xay-dung-dang.txt"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(
            f"{CORPUS} is missing: tests read real documents from ../shared beside the repo"
        )
    return CORPUS


@pytest.fixture(scope="session")
def report_path(corpus_dir: Path) -> Path:
    return REPORT


LAW = CORPUS / "laws" / "Luat-Phong-chong-tham-nhung-322049.txt"
LAW_LINES = 60  # the law's first chapters keep the fixture index small and fast


@pytest.fixture(scope="session")
def embedder():
    from api.loading import load_embedder

    return load_embedder()


@pytest.fixture(scope="session")
def classifier():
    from api.loading import load_classifier

    return load_classifier()


@pytest.fixture(scope="session")
def fixture_docs(tmp_path_factory, corpus_dir) -> Path:
    """A folder with the sample report and the opening chapters of the anti-corruption law."""
    folder = tmp_path_factory.mktemp("docs")
    (folder / REPORT.name).write_bytes(REPORT.read_bytes())
    law = LAW.read_text(encoding="utf-8").splitlines()[:LAW_LINES]
    (folder / LAW.name).write_text("\n".join(law) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def small_index(tmp_path_factory, fixture_docs, embedder, classifier) -> Path:
    from index.indexer import index_paths

    root = tmp_path_factory.mktemp("index") / "idx"
    index_paths([fixture_docs], root, embedder, classifier)
    return root


@pytest.fixture(scope="session")
def searcher(small_index, embedder):
    from index.search import Searcher

    return Searcher(small_index, embedder)


def _asgi_get(app, raw_path: bytes) -> tuple[int, bytes]:
    """GET a raw path straight through ASGI, decoded as uvicorn does and never normalised."""
    from urllib.parse import unquote

    async def call() -> list[dict]:
        path, _, query = raw_path.partition(b"?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": unquote(path.decode("ascii")),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": [(b"host", b"testserver")],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        messages: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            messages.append(message)

        await app(scope, receive, send)
        return messages

    messages = asyncio.run(call())
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return messages[0]["status"], body


@pytest.fixture(scope="session")
def asgi_get():
    """GET a raw path (query included) straight through ASGI: no client normalises or refuses it."""
    return _asgi_get
