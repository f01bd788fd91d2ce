"""The HTTP service: every endpoint, and every way a request can be refused."""

from __future__ import annotations

import gc
import math
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

import api.loading
from api.app import WARM_UP_QUERY, create_app
from api.schemas import MAX_CLASSIFY_CHARS, MAX_CLASSIFY_TEXTS, MAX_SECTION_CHARS, SearchOut
from index.search import MAX_K, MAX_OFFSET, MAX_QUERY_CHARS, MODES, TOPICS
from nlp.errors import IndexError_, InvalidInputError

DISCIPLINE = "thi hành kỷ luật 151 đảng viên"
# The report's paragraph on disciplining Party members, as a reader would paste it.
DISCIPLINE_PARAGRAPH = (
    "Cấp uỷ các cấp kiểm tra 534 đảng viên và 533 tổ chức đảng; giám sát 380 đảng viên và 256 "
    "tổ chức đảng; thi hành kỷ luật 151 đảng viên (khiển trách 117 đảng viên, cảnh cáo 22 đảng "
    "viên, cách chức 04 đảng viên và khai trừ 08 đảng viên) và 04 tổ chức đảng."
)


def assert_refused(response, status: int = 422, *names: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    for name in names:
        assert name in detail, detail
    return detail


@pytest.fixture(scope="module")
def discipline_hit(client) -> dict:
    hits = client.get("/search", params={"q": "ky luat dang vien", "k": 10}).json()["hits"]
    return next(hit for hit in hits if DISCIPLINE in hit["text"])


# -- /search -----------------------------------------------------------------------------


def test_search_returns_the_cli_json_object(client, searcher):
    response = client.get("/search", params={"q": "kỷ luật đảng viên", "k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body == searcher.search("kỷ luật đảng viên", k=5).to_json()
    assert SearchOut.model_validate(body).model_dump() == body  # the documented schema
    assert set(body) == {"query", "mode", "total", "hits"}
    assert set(body["hits"][0]) == {
        "rank",
        "score",
        "passage_id",
        "doc",
        "title",
        "section",
        "paragraph",
        "text",
        "highlight",
        "topic",
        "topic_scores",
    }


def test_search_without_diacritics_finds_the_disciplining_paragraph(client):
    body = client.get("/search", params={"q": "ky luat dang vien", "k": 3}).json()
    assert body["mode"] == "hybrid"
    assert any(DISCIPLINE in hit["text"] for hit in body["hits"])
    assert any("<mark>" in hit["highlight"] for hit in body["hits"])


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_answers(client, mode):
    body = client.get("/search", params={"q": "kỷ luật đảng viên", "mode": mode, "k": 5}).json()
    assert body["mode"] == mode
    assert 0 < len(body["hits"]) <= 5


def test_search_pages_with_offset(client):
    first = client.get("/search", params={"q": "đảng viên", "k": 4}).json()
    second = client.get("/search", params={"q": "đảng viên", "k": 2, "offset": 2}).json()
    assert [h["rank"] for h in second["hits"]] == [3, 4]
    assert [h["passage_id"] for h in second["hits"]] == [
        h["passage_id"] for h in first["hits"][2:4]
    ]


def test_search_filters_by_topic_document_and_section(client, searcher):
    for topic in TOPICS:
        body = client.get("/search", params={"q": "đảng viên", "topic": topic}).json()
        assert all(hit["topic"] == topic for hit in body["hits"])
    body = client.get("/search", params={"q": "đảng viên", "doc": "*Luat-*", "k": 20}).json()
    assert body["hits"] and all("Luat-" in hit["doc"] for hit in body["hits"])
    body = client.get("/search", params={"q": "đảng viên", "section": "kiem tra"}).json()
    assert body["hits"] and all("kiểm tra" in hit["section"].lower() for hit in body["hits"])


def test_search_with_a_filter_matching_nothing_is_empty_not_an_error(client):
    body = client.get("/search", params={"q": "đảng viên", "doc": "no-such-file.txt"}).json()
    assert body["total"] == 0 and body["hits"] == []


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({}, ["q", "required"]),
        ({"q": ""}, ["q"]),
        ({"q": "   "}, ["empty"]),
        ({"q": " \t\n "}, ["empty"]),
        ({"q": "?!…"}, ["no letters or digits"]),
        ({"q": "a" * (MAX_QUERY_CHARS + 1)}, ["q", str(MAX_QUERY_CHARS)]),
        ({"q": "x", "k": 0}, ["k", "1"]),
        ({"q": "x", "k": MAX_K + 1}, ["k", str(MAX_K)]),
        ({"q": "x", "k": "ten"}, ["k", "integer"]),
        ({"q": "x", "k": "1.5"}, ["k", "integer"]),
        ({"q": "x", "offset": -1}, ["offset", "0"]),
        ({"q": "x", "offset": MAX_OFFSET + 1}, ["offset", str(MAX_OFFSET)]),
        ({"q": "x", "offset": "next"}, ["offset", "integer"]),
        ({"q": "x", "mode": "semantic"}, ["mode", *MODES]),
        ({"q": "x", "mode": ""}, ["mode", *MODES]),
        ({"q": "x", "topic": "economy"}, ["topic", *TOPICS]),
        ({"q": "x", "topic": ""}, ["topic", *TOPICS]),
        ({"q": "x", "doc": "*" * 301}, ["doc", "300"]),
        ({"q": "x", "section": "s" * 301}, ["section", "300"]),
    ],
)
def test_search_rejects_bad_parameters(client, params, names):
    assert_refused(client.get("/search", params=params), 422, *names)


# -- /passages ---------------------------------------------------------------------------


def test_passages_pages_in_document_order(client, searcher):
    body = client.get("/passages", params={"limit": 5}).json()
    assert body["total"] == searcher.manifest.passages
    assert (body["limit"], body["offset"], len(body["passages"])) == (5, 0, 5)
    order = [(p["doc_id"], p["paragraph"]) for p in body["passages"]]
    assert order == sorted(order)
    after = client.get("/passages", params={"limit": 2, "offset": 3}).json()
    assert [p["passage_id"] for p in after["passages"]] == [
        p["passage_id"] for p in body["passages"][3:5]
    ]


def test_passages_filter_by_topic_and_document(client, searcher):
    counts = searcher.topic_counts()
    for topic in TOPICS:
        body = client.get("/passages", params={"topic": topic, "limit": MAX_K}).json()
        assert body["total"] == counts.get(topic, 0)
        assert all(p["topic"] == topic for p in body["passages"])
    body = client.get("/passages", params={"doc": "*Luat-*", "limit": 3}).json()
    assert body["passages"] and all("Luat-" in p["doc"] for p in body["passages"])


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"limit": 0}, ["limit"]),
        ({"limit": MAX_K + 1}, ["limit", str(MAX_K)]),
        ({"limit": "all"}, ["limit", "integer"]),
        ({"offset": -5}, ["offset"]),
        ({"offset": MAX_OFFSET + 1}, ["offset"]),
        ({"topic": "sport"}, ["topic", *TOPICS]),
        ({"doc": "d" * 301}, ["doc"]),
    ],
)
def test_passages_reject_bad_parameters(client, params, names):
    assert_refused(client.get("/passages", params=params), 422, *names)


def test_passage_comes_with_its_neighbours(client, discipline_hit):
    body = client.get(f"/passages/{discipline_hit['passage_id']}", params={"context": 2}).json()
    passage, neighbours = body["passage"], body["neighbours"]
    assert passage["passage_id"] == discipline_hit["passage_id"]
    assert DISCIPLINE in passage["text"]
    assert passage in neighbours
    paragraphs = [n["paragraph"] for n in neighbours]
    assert paragraphs == sorted(paragraphs) and len(neighbours) == 5
    assert all(abs(n["paragraph"] - passage["paragraph"]) <= 2 for n in neighbours)
    assert {n["doc_id"] for n in neighbours} == {passage["doc_id"]}
    alone = client.get(f"/passages/{discipline_hit['passage_id']}", params={"context": 0}).json()
    assert alone["neighbours"] == [alone["passage"]]


def test_unknown_passage_is_404(client):
    assert_refused(client.get("/passages/0000000000000000"), 404, "0000000000000000")


@pytest.mark.parametrize("context", [-1, 21, "two"])
def test_passage_rejects_bad_context(client, discipline_hit, context):
    response = client.get(f"/passages/{discipline_hit['passage_id']}", params={"context": context})
    assert_refused(response, 422, "context")


# -- /documents --------------------------------------------------------------------------


def test_documents_list_counts(client, searcher):
    body = client.get("/documents").json()
    assert body["total"] == len(body["documents"]) == searcher.manifest.documents
    assert sum(d["passages"] for d in body["documents"]) == searcher.manifest.passages
    for document in body["documents"]:
        assert set(document) == {"id", "title", "path", "passages", "topics", "sha256"}
        assert sum(document["topics"].values()) <= document["passages"]
        assert set(document["topics"]) <= set(TOPICS)


def test_documents_page_and_filter_by_path(client, searcher):
    everything = client.get("/documents").json()["documents"]
    page = client.get("/documents", params={"limit": 1, "offset": 1}).json()
    assert page["total"] == len(everything) and page["documents"] == everything[1:2]
    report = client.get("/documents", params={"doc": "*hai-duong*"}).json()
    assert report["total"] == 1 and "hai-duong" in report["documents"][0]["path"]


def test_document_comes_with_its_passages(client):
    documents = client.get("/documents").json()["documents"]
    report = next(d for d in documents if "hai-duong" in d["path"])
    body = client.get(f"/documents/{report['id']}").json()
    assert body["document"] == report
    assert body["total"] == report["passages"] == len(body["passages"])
    assert all(p["doc_id"] == report["id"] for p in body["passages"])
    assert [p["paragraph"] for p in body["passages"]] == sorted(
        p["paragraph"] for p in body["passages"]
    )
    assert any(DISCIPLINE in p["text"] for p in body["passages"])
    page = client.get(f"/documents/{report['id']}", params={"limit": 3, "offset": 2}).json()
    assert [p["passage_id"] for p in page["passages"]] == [
        p["passage_id"] for p in body["passages"][2:5]
    ]


def test_unknown_document_is_404(client):
    assert_refused(client.get("/documents/987654"), 404, "987654")


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/documents/report", "doc_id"),
        ("/documents/-1", "doc_id"),
        ("/documents/1?limit=0", "limit"),
        ("/documents/1?offset=-1", "offset"),
    ],
)
def test_document_rejects_bad_parameters(client, path, name):
    assert_refused(client.get(path), 422, name)


# -- /classify ---------------------------------------------------------------------------


def test_classify_returns_a_topic_and_scores_per_text(client):
    texts = [DISCIPLINE_PARAGRAPH, "Mặt trận Tổ quốc các cấp tổ chức hội nghị tiếp xúc cử tri."]
    response = client.post("/classify", json={"texts": texts})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body) == 2
    for prediction in body:
        assert set(prediction) == {"topic", "scores"}
        assert set(prediction["scores"]) == set(TOPICS)
        assert math.isclose(sum(prediction["scores"].values()), 1.0, abs_tol=1e-4)
        assert prediction["topic"] == max(prediction["scores"], key=prediction["scores"].get)
    assert body[0]["topic"] == "inspection"


def test_classify_reads_each_text_under_its_section(client, classifier, report_path):
    from nlp.paragraphs import split_passages
    from nlp.reader import read_document

    [passage] = [p for p in split_passages(read_document(report_path)) if "151 đảng" in p.text]
    assert passage.section  # "… > 3. Công tác kiểm tra, giám sát và thi hành kỷ luật Đảng"
    body = {"texts": [passage.text], "sections": [passage.section]}
    response = client.post("/classify", json=body)
    assert response.status_code == 200, response.text
    [under_heading] = classifier.predict([passage.text], sections=[passage.section])
    [alone] = classifier.predict([passage.text])
    scores = response.json()[0]["scores"]
    assert scores == pytest.approx(under_heading.scores, abs=1e-6)
    assert scores != pytest.approx(alone.scores, abs=1e-6)


@pytest.mark.parametrize(
    ("payload", "names"),
    [
        ({}, ["texts", "required"]),
        ({"texts": ["đảng viên"], "sections": []}, ["sections", "one heading per text"]),
        ({"texts": ["đảng viên"], "sections": ["a", "b"]}, ["sections", "2 entries for 1"]),
        ({"texts": ["đảng viên"], "sections": ["a" * (MAX_SECTION_CHARS + 1)]}, ["sections"]),
        ({"texts": ["đảng viên"], "sections": "kiểm tra"}, ["sections", "list"]),
        ({"texts": []}, ["texts", "1"]),
        ({"texts": ["đảng viên"] * (MAX_CLASSIFY_TEXTS + 1)}, ["texts", str(MAX_CLASSIFY_TEXTS)]),
        ({"texts": ["a" * (MAX_CLASSIFY_CHARS + 1)]}, ["texts", str(MAX_CLASSIFY_CHARS)]),
        ({"texts": ["đảng viên", ""]}, ["texts", "1"]),
        ({"texts": ["  \n "]}, ["texts", "words"]),
        ({"texts": "đảng viên"}, ["texts", "list"]),
        ({"texts": [1, 2]}, ["texts", "string"]),
        ({"texts": [None]}, ["texts", "string"]),
        ({"texts": ["đảng viên"], "model": "other"}, ["model", "not permitted"]),
        ([["đảng viên"]], ["body"]),
    ],
)
def test_classify_rejects_bad_bodies(client, payload, names):
    assert_refused(client.post("/classify", json=payload), 422, *names)


def test_classify_rejects_malformed_json(client):
    response = client.post(
        "/classify", content=b'{"texts": [', headers={"content-type": "application/json"}
    )
    assert_refused(response, 422, "JSON")


def test_oversized_bodies_are_refused_before_reading(client):
    body = b'{"texts": ["' + b"a" * (2 << 20) + b'"]}'
    response = client.post("/classify", content=body, headers={"content-type": "application/json"})
    assert_refused(response, 413, "bytes")


def test_oversized_chunked_bodies_are_refused(client):
    def chunks():
        yield b'{"texts": ["'
        for _ in range(20):
            yield b"a" * (1 << 16)
        yield b'"]}'

    response = client.post(
        "/classify", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_refused(response, 413, "bytes")


# -- /health, /stats, page and docs ------------------------------------------------------


def test_health(client, searcher):
    assert client.get("/health").json() == {
        "status": "ok",
        "generation": searcher.manifest.generation,
        "passages": searcher.manifest.passages,
    }


def test_stats(client, searcher):
    body = client.get("/stats").json()
    assert body["documents"] == searcher.manifest.documents
    assert body["passages"] == searcher.manifest.passages
    assert body["model"]["name"] == searcher.manifest.model.name
    assert body["index_bytes"] > 0
    assert body["topics"] == searcher.topic_counts()
    assert body["classifier"]["labels"] and set(body["classifier"]["labels"]) == set(TOPICS)
    assert 0 < body["memory"]["rss_bytes"] <= body["memory"]["peak_rss_bytes"]


def test_page_and_its_assets_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "Tìm kiếm" in page.text and "Chủ đề" in page.text and "Chế độ" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    for asset in ("/static/app.js", "/static/style.css", "/static/favicon.svg"):
        response = client.get(asset)
        assert response.status_code == 200, asset
        assert "https://" not in response.text, asset
    assert client.get("/static/nothing.js").status_code == 404


def test_openapi_documents_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/search",
        "/passages",
        "/passages/{passage_id}",
        "/documents",
        "/documents/{doc_id}",
        "/classify",
        "/health",
        "/stats",
    } <= set(paths)
    modes = next(p for p in paths["/search"]["get"]["parameters"] if p["name"] == "mode")
    assert set(modes["schema"]["enum"]) == set(MODES)


def test_docs_page_works_offline(client):
    pytest.importorskip("fastapi_offline")
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert "cdn." not in docs.text
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


# -- robustness --------------------------------------------------------------------------

ODD_QUERIES = [
    "%00",
    "%FF%FE",
    "%ED%A0%80",
    "%F0%9F%98%80%20%C4%91%E1%BA%A3ng",
    "<script>alert(1)</script>",
    "k%E1%BB%B7%20lu%E1%BA%ADt",  # NFC
    "ky%CC%89%20lua%CC%A3%CC%82t",  # NFD
    "h%C3%B2a%20ho%C3%A0",  # both tone-mark styles
    "%5B%5B%5B*%3F",
    "a%20" * 400,
]


@pytest.mark.parametrize("raw", ODD_QUERIES)
def test_odd_input_never_makes_a_server_error(client, raw):
    for path in (
        f"/search?q={raw}",
        f"/search?q=dang&doc={raw}&section={raw}",
        f"/passages?doc={raw}&section={raw}",
        f"/passages/{raw}",
        f"/documents/{raw}",
    ):
        response = client.get(path)
        assert response.status_code < 500, (path, response.text)
        assert "detail" in response.json() or response.status_code == 200


def test_highlights_are_escaped(client):
    body = client.get("/search", params={"q": "<b>đảng viên</b>", "k": 3}).json()
    for hit in body["hits"]:
        assert "<b>" not in hit["highlight"]


def test_concurrent_searches_agree(client):
    params = {"q": "ky luat dang vien", "k": 5}
    expected = client.get("/search", params=params).json()
    with ThreadPoolExecutor(max_workers=6) as pool:
        bodies = list(pool.map(lambda _: client.get("/search", params=params).json(), range(12)))
    assert all(body == expected for body in bodies)


# -- start-up, reloading and error mapping, with stand-ins -------------------------------


class StubSearcher:
    """Just enough of a Searcher to count reload checks and raise chosen errors."""

    def __init__(self, error: Exception | None = None, reload_error: Exception | None = None):
        self.manifest = SimpleNamespace(generation=1, passages=0)
        self.reload_checks = 0
        self.error = error
        self.reload_error = reload_error

    def reload_if_changed(self) -> bool:
        self.reload_checks += 1
        if self.reload_error:
            raise self.reload_error
        return False

    def search(self, *args, **kwargs):
        raise self.error


def test_reload_is_checked_at_most_once_per_interval(classifier):
    stub = StubSearcher()
    with TestClient(create_app(searcher=stub, classifier=classifier, reload_interval=60)) as c:
        for _ in range(5):
            assert c.get("/health").status_code == 200
    assert stub.reload_checks == 1
    stub = StubSearcher()
    with TestClient(create_app(searcher=stub, classifier=classifier, reload_interval=0)) as c:
        for _ in range(3):
            c.get("/health")
    assert stub.reload_checks == 3


def test_a_failed_reload_keeps_serving(classifier):
    stub = StubSearcher(reload_error=IndexError_("generation 2 is damaged"))
    with TestClient(create_app(searcher=stub, classifier=classifier, reload_interval=0)) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("error", "status"),
    [(InvalidInputError("bad value; use one of: a, b"), 422), (IndexError_("index gone"), 503)],
)
def test_vnsearch_errors_map_to_status_codes(classifier, error, status):
    stub = StubSearcher(error=error)
    with TestClient(create_app(searcher=stub, classifier=classifier)) as c:
        assert_refused(c.get("/search", params={"q": "x"}), status, str(error))


def test_models_load_once_at_start_up(monkeypatch, searcher, classifier):
    calls = {"searcher": 0, "classifier": 0}

    def fake_open_searcher(index, model=None, device=None):
        calls["searcher"] += 1
        return searcher

    def fake_load_classifier(model_dir=None):
        calls["classifier"] += 1
        return classifier

    monkeypatch.setattr(api.loading, "open_searcher", fake_open_searcher)
    monkeypatch.setattr(api.loading, "load_classifier", fake_load_classifier)
    app = create_app(searcher.root)
    assert calls == {"searcher": 0, "classifier": 0}
    with TestClient(app) as c:
        assert calls == {"searcher": 1, "classifier": 1}
        c.get("/search", params={"q": "đảng viên"})
        c.post("/classify", json={"texts": ["đảng viên"]})
    assert calls == {"searcher": 1, "classifier": 1}


class WarmingStub(StubSearcher):
    """A stand-in that records searches and reports one new generation on request."""

    def __init__(self) -> None:
        super().__init__()
        self.searches: list[str] = []
        self.new_generation = False

    def reload_if_changed(self) -> bool:
        super().reload_if_changed()
        found, self.new_generation = self.new_generation, False
        return found

    def search(self, query, *args, **kwargs):
        self.searches.append(query)
        return SimpleNamespace(to_json=lambda: {"query": query, "hits": []})


def test_a_loaded_index_is_warmed_and_kept_out_of_the_collectors_scans(
    monkeypatch, classifier, small_index
):
    stub = WarmingStub()
    monkeypatch.setattr(api.loading, "open_searcher", lambda index, model=None, device=None: stub)
    monkeypatch.setattr(api.loading, "load_classifier", lambda model_dir=None: classifier)
    gc.unfreeze()
    try:
        with TestClient(create_app(small_index, reload_interval=0)) as c:
            assert stub.searches == [WARM_UP_QUERY]
            assert gc.get_freeze_count() > 0
            c.get("/health")
            assert len(stub.searches) == 1  # no new generation: nothing to warm
            gc.unfreeze()
            stub.new_generation = True
            c.get("/health")
            assert len(stub.searches) == 2 and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_a_searcher_passed_in_is_not_searched_at_start(classifier):
    stub = WarmingStub()
    with TestClient(create_app(searcher=stub, classifier=classifier)):
        assert stub.searches == []


def test_create_app_refuses_a_missing_index(tmp_path):
    with pytest.raises(IndexError_, match="vnsearch index"):
        create_app(tmp_path / "nowhere")
    with pytest.raises(ValueError):
        create_app()
