"""The HTTP service: search, browsing and topic tagging of one index, and the web page at `/`."""

from __future__ import annotations

import gc
import glob
import importlib.util
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from api.schemas import (
    ClassifyIn,
    ClassifyOut,
    DocumentDetailOut,
    DocumentListOut,
    DocumentOut,
    ErrorOut,
    HealthOut,
    PassageContextOut,
    PassageListOut,
    SearchOut,
    StatsOut,
)
from index.search import MAX_K, MAX_OFFSET, MAX_QUERY_CHARS, MODES, TOPICS
from nlp.errors import DocumentReadError, IndexError_, InvalidInputError, ModelError, VnsearchError

STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 1 << 20
MAX_FILTER_CHARS = 300
MAX_CONTEXT = 20
MAX_DOCUMENTS = 100_000  # a page of /documents; the default lists them all
RELOAD_INTERVAL_S = 1.0
# Searched once when an index is loaded, so that the first user's search finds it warm.
WARM_UP_QUERY = "kỷ luật đảng viên"

Mode = Literal[MODES]
Topic = Literal[TOPICS]

log = logging.getLogger("vnsearch.api")

# The page inserts server-escaped highlights as HTML; nothing else may run or load there.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

# VnsearchError subclasses by HTTP status. Index and model errors at request time are the
# server's state, not the request's fault, so they are 503; nothing a client sends reaches them.
ERROR_STATUS: tuple[tuple[type[VnsearchError], int], ...] = (
    (InvalidInputError, 422),
    (DocumentReadError, 400),
    (IndexError_, 503),
    (ModelError, 503),
)

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorOut, "description": "A parameter is invalid; `detail` says which."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    404: {"model": ErrorOut, "description": "No such passage or document."},
}


class Services:
    """The index and models one app serves, loaded once and shared by every request."""

    def __init__(
        self, searcher: Any, classifier: Any, reload_interval: float = RELOAD_INTERVAL_S
    ) -> None:
        """Hold `searcher` (index.search.Searcher) and `classifier` (models.topics)."""
        self.searcher = searcher
        self.classifier = classifier
        self.reload_interval = reload_interval
        self._classify_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._next_reload = 0.0
        self._reload_error: str | None = None

    def reload_if_due(self) -> None:
        """Pick up a newer index generation, checking at most once per `reload_interval`.

        A generation that fails to load is logged once and the current one keeps serving.
        """
        now = time.monotonic()
        if now < self._next_reload or not self._reload_lock.acquire(blocking=False):
            return
        try:
            self._next_reload = now + self.reload_interval
            if self.searcher.reload_if_changed():
                log.info("now serving index generation %d", self.searcher.manifest.generation)
                self.settle()
            self._reload_error = None
        except (VnsearchError, OSError) as exc:
            if str(exc) != self._reload_error:
                log.warning("keeping the current index: %s", exc)
            self._reload_error = str(exc)
        finally:
            self._reload_lock.release()

    def settle(self) -> None:
        """Warm the search path, then take what is loaded out of the garbage collector's scans.

        The index and models live as long as the service. Left in the collected generations,
        they made the first collections after start take up to 50 ms, inside requests: the
        slowest searches of a fresh server (eval/RESULTS.md). A first search builds what
        searching builds lazily; `gc.freeze` then moves every live object to a generation the
        collector never scans (objects are still freed when nothing refers to them). After a
        reload the previous index's objects are unfrozen and collected first.
        """
        try:
            self.searcher.search(WARM_UP_QUERY, k=1)
        except VnsearchError as exc:  # e.g. a lexical-only searcher; nothing to warm then
            log.debug("warm-up search skipped: %s", exc)
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def classify(self, texts: list[str], sections: list[str] | None = None) -> list[Any]:
        """Predict topics, one call at a time: the word segmenter is not known to be thread-safe."""
        with self._classify_lock:
            return self.classifier.predict(texts, sections=sections)


def create_app(
    index_dir: str | Path | None = None,
    *,
    searcher: Any = None,
    classifier: Any = None,
    model: str | None = None,
    topic_model: str | None = None,
    device: str | None = None,
    reload_interval: float = RELOAD_INTERVAL_S,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """Build the service for one index.

    Objects passed in are used as they are; the others are loaded once, when the app starts
    (its lifespan), never per request.

    Args:
        index_dir: The index folder; not needed when `searcher` is given.
        searcher: An `index.search.Searcher` to serve.
        classifier: A `models.topics.TopicClassifier` for /classify.
        model: Embedding model name or path (must match the index).
        topic_model: Topic model folder; None for the one shipped with vnsearch.
        device: "cpu" or "cuda" for the embedder.
        reload_interval: Seconds between checks for a newer index generation.
        max_body_bytes: Larger request bodies are refused with 413.

    Returns:
        The FastAPI application.

    Raises:
        IndexError_: There is no index at `index_dir` (checked now, before any model loads).
        ValueError: Neither `index_dir` nor `searcher` was given.
    """
    if searcher is None:
        if index_dir is None:
            raise ValueError("create_app needs index_dir or searcher")
        from index.store import read_manifest

        if read_manifest(index_dir) is None:
            raise IndexError_(
                f"no index at {index_dir}; create one with: vnsearch index PATH... "
                f"--index {index_dir}"
            )
    services = Services(searcher, classifier, reload_interval)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from api.loading import load_classifier, open_searcher

        if services.classifier is None:
            services.classifier = load_classifier(topic_model)
        if services.searcher is None:  # a searcher passed in is the caller's to manage
            services.searcher = open_searcher(index_dir, model, device)
            services.settle()  # after the classifier, so that it is frozen too
        yield

    app = FastAPI(
        title="vnsearch",
        summary="Search and topic-tag Vietnamese Party committee work reports, offline.",
        version=_version(),
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_exception_handler(VnsearchError, _vnsearch_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(Exception, _internal_error)
    _add_api_routes(app)
    _add_page_routes(app)
    return app


# -- endpoints ---------------------------------------------------------------------------

QueryText = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        description="What to look for, with or without diacritics.",
        examples=["ky luat dang vien"],
    ),
]
TopicFilter = Annotated[Topic | None, Query(description="Only passages tagged with this topic.")]
DocFilter = Annotated[
    str | None,
    Query(
        max_length=MAX_FILTER_CHARS,
        description="Only documents whose path or file name matches this glob (or contains it).",
    ),
]
SectionFilter = Annotated[
    str | None,
    Query(
        max_length=MAX_FILTER_CHARS,
        description="Only passages whose section headings contain this (accent-insensitive).",
    ),
]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip (paging).")]
Limit = Annotated[int, Query(ge=1, le=MAX_K, description="Items per page.")]


def _services(request: Request) -> Services:
    return request.app.state.services


def _searcher(request: Request) -> Any:
    services: Services = request.app.state.services
    services.reload_if_due()
    return services.searcher


ServicesDep = Annotated[Services, Depends(_services)]
SearcherDep = Annotated[Any, Depends(_searcher)]


def _add_api_routes(app: FastAPI) -> None:
    # Endpoints are plain `def`: FastAPI runs them in its threadpool, and the Searcher
    # serialises access to its index with a lock.

    @app.get("/search", response_model=SearchOut, tags=["search"], responses=ERROR_RESPONSES)
    def search(
        searcher: SearcherDep,
        q: QueryText,
        k: Annotated[int, Query(ge=1, le=MAX_K, description="Hits per page.")] = 10,
        offset: Offset = 0,
        mode: Annotated[
            Mode, Query(description="hybrid (both legs fused), dense (meaning) or lexical.")
        ] = "hybrid",
        topic: TopicFilter = None,
        doc: DocFilter = None,
        section: SectionFilter = None,
    ) -> JSONResponse:
        """Search passages by meaning and exact terms: what `vnsearch search --json` prints."""
        # The searcher builds hits to `SearchOut` already; returned as a response, they skip a
        # second validation by the response model (0.3 ms of a 7 ms search, eval/RESULTS.md).
        return JSONResponse(searcher.search(q, k, offset, mode, topic, doc, section).to_json())

    @app.get("/passages", response_model=PassageListOut, tags=["browse"], responses=ERROR_RESPONSES)
    def list_passages(
        searcher: SearcherDep,
        topic: TopicFilter = None,
        doc: DocFilter = None,
        section: SectionFilter = None,
        limit: Limit = 20,
        offset: Offset = 0,
    ) -> dict:
        """List passages in document order, filtered by topic, document and section."""
        total, page = searcher.list_passages(topic, doc, section, limit, offset)
        return {
            "total": total,
            "limit": limit,
            "offset": offset,
            "passages": [vars(p) for p in page],
        }

    @app.get(
        "/passages/{passage_id}",
        response_model=PassageContextOut,
        tags=["browse"],
        responses=NOT_FOUND,
    )
    def get_passage(
        searcher: SearcherDep,
        passage_id: Annotated[str, PathParam(max_length=100)],
        context: Annotated[
            int, Query(ge=0, le=MAX_CONTEXT, description="Neighbours on each side.")
        ] = 2,
    ) -> dict:
        """Return a passage with its neighbours in the document, for reading it in context."""
        found = searcher.get_passage(passage_id, context)
        if found is None:
            raise HTTPException(
                404, f"no passage {passage_id!r}; take ids from /search or /passages"
            )
        passage, around = found
        return {"passage": vars(passage), "neighbours": [vars(p) for p in around]}

    @app.get(
        "/documents", response_model=DocumentListOut, tags=["browse"], responses=ERROR_RESPONSES
    )
    def list_documents(
        searcher: SearcherDep,
        doc: DocFilter = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_DOCUMENTS, description="Documents per page.")
        ] = MAX_DOCUMENTS,
        offset: Offset = 0,
    ) -> dict:
        """List indexed documents with their passage and per-topic counts, in path order."""
        documents = searcher.documents(doc)
        page = [_document_json(d) for d in documents[offset : offset + limit]]
        return {"total": len(documents), "documents": page}

    @app.get(
        "/documents/{doc_id}",
        response_model=DocumentDetailOut,
        tags=["browse"],
        responses=NOT_FOUND,
    )
    def get_document(
        searcher: SearcherDep,
        doc_id: Annotated[int, PathParam(ge=0, description="`id` from /documents.")],
        limit: Annotated[int, Query(ge=1, le=MAX_K, description="Passages per page.")] = MAX_K,
        offset: Offset = 0,
    ) -> dict:
        """Return a document and a page of its passages, in order."""
        document = next((d for d in searcher.documents() if d.id == doc_id), None)
        if document is None:
            raise HTTPException(404, f"no document {doc_id}; take ids from /documents")
        # The exact path, escaped, so that the glob filter matches this document only.
        _, page = searcher.list_passages(doc=glob.escape(document.path), limit=limit, offset=offset)
        return {
            "document": _document_json(document),
            "total": document.passages,
            "limit": limit,
            "offset": offset,
            "passages": [vars(p) for p in page if p.doc_id == doc_id],
        }

    @app.post(
        "/classify", response_model=list[ClassifyOut], tags=["classify"], responses=ERROR_RESPONSES
    )
    def classify(services: ServicesDep, body: ClassifyIn) -> list[dict]:
        """Tag paragraphs with their most probable topic and the probability of every topic."""
        found = services.classify(body.texts, body.sections)
        return [{"topic": p.topic, "scores": p.scores} for p in found]

    @app.get("/health", response_model=HealthOut, tags=["service"])
    def health(searcher: SearcherDep) -> dict:
        """Say the service is up, with the index generation it serves."""
        manifest = searcher.manifest
        return {"status": "ok", "generation": manifest.generation, "passages": manifest.passages}

    @app.get("/stats", response_model=StatsOut, tags=["service"])
    def stats(services: ServicesDep, searcher: SearcherDep) -> dict:
        """Return counts, models and on-disk size of the served index."""
        labels = getattr(services.classifier, "labels", TOPICS)
        return {
            **searcher.stats(),
            "index": str(searcher.root),
            "classifier": {"labels": list(labels)},
            "memory": process_memory(),
        }


def process_memory() -> dict[str, int]:
    """Return this process's resident and peak resident memory in bytes (Linux /proc)."""
    found = {"VmRSS": 0, "VmHWM": 0}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                name, _, value = line.partition(":")
                if name in found:
                    found[name] = int(value.split()[0]) * 1024  # reported in kB
    except OSError:
        pass
    return {"rss_bytes": found["VmRSS"], "peak_rss_bytes": found["VmHWM"]}


def _add_page_routes(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    # Swagger UI loads its scripts from a CDN unless they are served here; the machine this
    # runs on is usually offline, so use the copy fastapi-offline ships when it is installed.
    assets = _swagger_assets()
    local: dict[str, str] = {}
    if assets is not None:
        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
        local = {
            "swagger_js_url": "/docs-assets/swagger-ui-bundle.js",
            "swagger_css_url": "/docs-assets/swagger-ui.css",
            "swagger_favicon_url": "/static/favicon.svg",
        }

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="vnsearch API", **local)


def _document_json(document: Any) -> DocumentOut:
    return DocumentOut(
        id=document.id,
        title=document.title,
        path=document.path,
        passages=document.passages,
        topics=document.topics,
        sha256=document.sha256,
    )


def _swagger_assets() -> Path | None:
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vnsearch")
    except PackageNotFoundError:
        return "0"


# -- errors ------------------------------------------------------------------------------


async def _vnsearch_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((code for kind, code in ERROR_STATUS if isinstance(exc, kind)), 400)
    if status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": str(exc)}, status_code=status)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": [str(part) for part in e["loc"]], "msg": e["msg"]} for e in exc.errors()]
    detail = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in errors)
    return JSONResponse({"detail": detail, "errors": errors}, status_code=422)


def _where(loc: list[str]) -> str:
    """Name a parameter from a pydantic location: ["query", "k"] -> "k"."""
    parts = loc[1:] if len(loc) > 1 and loc[0] in ("query", "path", "body") else loc
    return ".".join(parts) or "request"


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        {"detail": "internal error; the server log has the details"}, status_code=500
    )


# -- request size ------------------------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyLimit:
    """ASGI middleware refusing request bodies over `max_bytes` with 413.

    A declared Content-Length is checked before anything is read; a body sent without one
    (chunked) is counted as it arrives.
    """

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int
    ) -> None:
        """Wrap `app`."""
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request or other ASGI event."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the endpoint's body parsing, which re-raises HTTP errors.
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, counted_receive, send)

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes; send less text per call"

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": self._message()}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
