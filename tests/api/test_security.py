"""Security of the service: loopback only, read-only, no file access, no pickle, bounded."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

import api.cli
from api.app import MAX_BODY_BYTES, create_app
from api.schemas import MAX_CLASSIFY_CHARS, MAX_CLASSIFY_TEXTS
from index.search import MAX_QUERY_CHARS

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("nlp", "models", "index", "api", "eval")
SECRETS = (REPO / "pyproject.toml").read_text(encoding="utf-8")[:200]
READ_ONLY = {("/classify", "post")}  # computes topics for the text sent; stores nothing


# -- loopback only -----------------------------------------------------------------------


def test_serve_binds_to_loopback_by_default(monkeypatch, small_index):
    serve = typer.main.get_command(api.cli.app).commands["serve"]
    host = next(param for param in serve.params if param.name == "host")
    assert host.default == "127.0.0.1"
    calls = []
    monkeypatch.setattr("uvicorn.run", lambda app, **kwargs: calls.append(kwargs))
    result = CliRunner().invoke(api.cli.app, ["serve", "--index", str(small_index)])
    assert result.exit_code == 0, result.output
    assert calls and calls[0]["host"] == "127.0.0.1"
    # The app itself opens no socket: only the CLI (or a caller's server) decides the address.
    assert "host" not in inspect.signature(create_app).parameters


# -- read-only ---------------------------------------------------------------------------


def test_openapi_has_no_write_endpoints(client):
    paths = client.get("/openapi.json").json()["paths"]
    operations = {(path, method) for path, item in paths.items() for method in item}
    writes = {(p, m) for p, m in operations if m != "get"}
    assert writes == READ_ONLY, writes


def test_every_route_is_read_only(client):
    for route in client.app.routes:
        methods = getattr(route, "methods", None)
        if methods is None:  # mounted static folders: GET and HEAD only
            continue
        assert methods <= {"GET", "HEAD"} or (route.path, "post") in READ_ONLY, route.path
    for path in ("/search", "/passages", "/documents", "/documents/1", "/health", "/stats", "/"):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            response = client.request(method, path)
            assert response.status_code in (404, 405), (method, path, response.status_code)


def test_classify_changes_nothing(client):
    before = (client.get("/health").json(), client.get("/documents").json())
    text = "Thi hành kỷ luật 151 đảng viên và 04 tổ chức đảng."
    assert client.post("/classify", json={"texts": [text] * 3}).status_code == 200
    assert (client.get("/health").json(), client.get("/documents").json()) == before


# -- no file access outside the index ----------------------------------------------------


TRAVERSALS = [
    b"/passages/..%2F..%2Fetc%2Fpasswd",
    b"/passages/../../etc/passwd",
    b"/passages/%2e%2e%2f%2e%2e%2fpyproject.toml",
    b"/passages/..%5C..%5Cpyproject.toml",
    b"/passages/%2Fetc%2Fpasswd",
    b"/documents/../../x",
    b"/documents/..%2F..%2Fpyproject.toml",
    b"/documents/1/../../../pyproject.toml",
    b"/static/../../pyproject.toml",
    b"/static/..%2F..%2Fpyproject.toml",
    b"/static/%2e%2e/%2e%2e/pyproject.toml",
    b"/static/..%5C..%5Cpyproject.toml",
    b"/static//etc/passwd",
    b"/static/%2Fetc%2Fpasswd",
    b"/docs-assets/../../../../../etc/passwd",
    b"/docs-assets/..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    b"/passages?doc=../../etc/passwd",
    b"/search?q=passwd&doc=/etc/passwd",
]


@pytest.mark.parametrize("raw_path", TRAVERSALS, ids=lambda raw: raw.decode())
def test_path_traversal_never_reads_a_file(client, asgi_get, raw_path):
    status, body = asgi_get(client.app, raw_path)
    assert b"root:" not in body and SECRETS.encode() not in body and b"[build-system]" not in body
    if b"?" in raw_path:  # filters match indexed documents only
        assert status == 200 and b'"total":0' in body, body[:300]
    else:
        assert status in (404, 422), (status, body[:300])
    # The same request through an HTTP client, which may normalise the dots first.
    response = client.get(raw_path.decode())
    assert b"root:" not in response.content and b"[build-system]" not in response.content
    assert response.status_code in (200, 404, 422)


def test_static_files_serve_only_the_page_assets(client):
    assert client.get("/static/app.js").status_code == 200
    for name in ("index.py", "../app.py", "../../pyproject.toml", "../schemas.py"):
        assert client.get(f"/static/{name}").status_code == 404


# -- no pickle ---------------------------------------------------------------------------

PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve"}


def _call_name(node: ast.Call) -> str:
    parts = []
    func = node.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _keyword(node: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in node.keywords if k.arg == name), None)


def _is_true(value: ast.expr | None) -> bool:
    return isinstance(value, ast.Constant) and value.value is True


def pickle_loads_in(source: str, filename: str) -> list[str]:
    """Return `file:line: what` for every way `source` could unpickle data."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(n.split(".")[0] in PICKLE_MODULES for n in names):
                found.append(f"{where}: imports {', '.join(filter(None, names))}")
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        if name.endswith("read_pickle") or name in ("marshal.load", "marshal.loads"):
            found.append(f"{where}: {name}")
        if name in ("np.load", "numpy.load") and _keyword(node, "allow_pickle") is not None:
            if not (
                isinstance(_keyword(node, "allow_pickle"), ast.Constant)
                and _keyword(node, "allow_pickle").value is False
            ):
                found.append(f"{where}: {name} with allow_pickle not False")
        if name == "torch.load" and not _is_true(_keyword(node, "weights_only")):
            found.append(f"{where}: torch.load without weights_only=True")
        if name.endswith(".load") and _is_true(_keyword(node, "trusted")):
            found.append(f"{where}: {name}(trusted=True)")
    return found


def test_the_scanner_finds_every_kind_of_pickle_load():
    bad = (
        "import pickle\nfrom joblib import load\nimport numpy as np, torch, pandas as pd\n"
        "np.load('a.npy', allow_pickle=True)\nnp.load('a.npy', allow_pickle=flag)\n"
        "torch.load('m.pt')\ntorch.load('m.pt', weights_only=False)\npd.read_pickle('x')\n"
        "skops.io.load('m.skops', trusted=True)\n"
    )
    assert len(pickle_loads_in(bad, "bad.py")) == 8
    good = (
        "np.load('a.npy', allow_pickle=False)\nnp.load('b.npy')\ntorch.load('m', weights_only=True)"
    )
    assert pickle_loads_in(good, "good.py") == []


def test_no_package_loads_pickles():
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found += pickle_loads_in(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    assert not found, found


_UNPICKLING: list[str] = []
_WATCHING = False


def _audit(event: str, args: tuple) -> None:
    if _WATCHING and event == "pickle.find_class":
        _UNPICKLING.append(f"{args[0]}.{args[1]}")


def test_loading_an_index_and_a_topic_model_unpickles_nothing(small_index, embedder):
    # Any unpickling that could run code resolves a global, which Python audits; the hook
    # stays for the session (hooks cannot be removed) but records only inside this test.
    global _WATCHING
    import models.topics
    from index.search import Searcher

    sys.addaudithook(_audit)
    _WATCHING = True
    try:
        searcher = Searcher(small_index, embedder)
        assert searcher.search("kỷ luật đảng viên", k=3).hits
        classifier = models.topics.TopicClassifier.load(models.topics.DEFAULT_MODEL_DIR)
        assert classifier.predict(["Thi hành kỷ luật 151 đảng viên."])
    finally:
        _WATCHING = False
    assert not _UNPICKLING, _UNPICKLING


# -- bounded input -----------------------------------------------------------------------


def test_every_parameter_is_bounded_in_the_schema(client):
    spec = client.get("/openapi.json").json()
    unbounded = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                schemas = parameter["schema"].get("anyOf", [parameter["schema"]])
                for schema in schemas:
                    kind = schema.get("type")
                    if kind == "string" and "maxLength" not in schema and "enum" not in schema:
                        unbounded.append((method, path, parameter["name"]))
                    if kind == "array":
                        unbounded.append((method, path, parameter["name"]))
    texts = spec["components"]["schemas"]["ClassifyIn"]["properties"]["texts"]
    assert texts["maxItems"] == MAX_CLASSIFY_TEXTS
    assert texts["items"]["maxLength"] == MAX_CLASSIFY_CHARS
    assert not unbounded, unbounded


@pytest.mark.parametrize(
    ("request_args", "status"),
    [
        ({"method": "GET", "url": "/search", "params": {"q": "a" * (MAX_QUERY_CHARS + 1)}}, 422),
        ({"method": "GET", "url": "/passages", "params": {"doc": "*" * 301}}, 422),
        ({"method": "GET", "url": "/passages/" + "x" * 101}, 422),
        (
            {"method": "POST", "url": "/classify", "json": {"texts": ["đảng viên"] * 65}},
            422,
        ),
        (
            {"method": "POST", "url": "/classify", "json": {"texts": ["á" * 10_001]}},
            422,
        ),
        (
            {
                "method": "POST",
                "url": "/classify",
                "content": b"x" * (MAX_BODY_BYTES + 1),
                "headers": {"content-type": "application/json"},
            },
            413,
        ),
        (
            {
                "method": "POST",
                "url": "/classify",
                "content": b"{}",
                "headers": {"content-type": "application/json", "content-length": "1e9"},
            },
            413,
        ),
    ],
    ids=["query", "filter", "passage-id", "texts", "text", "body", "bad-length"],
)
def test_oversized_input_is_refused(client, request_args, status):
    response = client.request(**request_args)
    assert response.status_code == status, response.text[:300]
    assert isinstance(response.json()["detail"], str)
