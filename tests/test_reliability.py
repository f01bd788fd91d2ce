"""Bad input through the CLI and the API, and searching while a re-index runs.

Every refusal must say what is wrong (exit code 2 and `error: ...` for the CLI, a 4xx with a
`detail` for HTTP, or the file named as skipped), and nothing already indexed may change.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path

import docx
import httpx
import pytest
from fastapi.testclient import TestClient

import api.cli
import api.loading
from api.app import create_app
from index.search import MAX_K, MAX_OFFSET, MAX_QUERY_CHARS, MODES, TOPICS, Searcher
from index.store import read_manifest
from nlp.paragraphs import MAX_PASSAGE_CHARS, split_passages
from nlp.reader import MAX_FILE_BYTES, read_document

REPO = Path(__file__).resolve().parents[1]
DISCIPLINE = "thi hành kỷ luật 151 đảng viên"
STATE_QUERIES = ("kỷ luật đảng viên", "ky luat dang vien", "phòng, chống tham nhũng")
STATE_SEARCHES = tuple(zip(STATE_QUERIES, MODES, strict=True))
# A short real party document, added by the re-index that runs while the app serves.
ADDED_DOCUMENT = "party/01b33bf53f319a03.md"


# -- helpers -----------------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    out: str
    err: str


@pytest.fixture()
def vnsearch(monkeypatch, capsys, embedder, classifier):
    """Run the `vnsearch` entry point in this process, with the session's models."""
    monkeypatch.setattr(api.cli, "load_embedder", lambda *args, **kwargs: embedder)
    monkeypatch.setattr(api.cli, "load_classifier", lambda *args, **kwargs: classifier)
    monkeypatch.setattr(api.loading, "load_embedder", lambda *args, **kwargs: embedder)

    def run(*args: str) -> Outcome:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["vnsearch", *map(str, args)])
        with pytest.raises(SystemExit) as exited:
            api.cli.main()
        captured = capsys.readouterr()
        code = exited.value.code
        return Outcome(0 if code is None else int(code), captured.out, captured.err)

    return run


def index_state(root: Path, embedder) -> dict:
    """What a user of the index sees: counts, documents, passages and fixed search results."""
    manifest = read_manifest(root)
    searcher = Searcher(root, embedder)
    total, passages = searcher.list_passages(limit=MAX_K)
    return {
        "documents": [(d.path, d.sha256, d.passages) for d in searcher.documents()],
        "counts": (manifest.documents, manifest.passages, total),
        "passages": [p.passage_id for p in passages],
        "results": [searcher.search(q, k=5, mode=mode).to_json() for q, mode in STATE_SEARCHES],
    }


@pytest.fixture()
def index_copy(tmp_path, small_index) -> Path:
    root = tmp_path / "idx"
    shutil.copytree(small_index, root)
    return root


def assert_cli_error(outcome: Outcome, *words: str) -> None:
    assert outcome.code == 2, outcome
    assert outcome.err.startswith("error: ") or "Error" in outcome.err, outcome.err
    for word in words:
        assert word in outcome.err, outcome.err


# -- CLI: queries and options ------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("", ["empty"]),
        ("   \t ", ["empty"]),
        ("?!… —", ["no letters or digits"]),
        ("\x00\x01\x02\x1b\x7f", ["empty"]),
        ("\u200b\u200d\ufeff", ["empty"]),
        ("đảng viên " * 10_000, ["100000 characters", str(MAX_QUERY_CHARS)]),
    ],
    ids=["empty", "whitespace", "punctuation", "control", "zero-width", "100k-chars"],
)
def test_cli_refuses_bad_queries(vnsearch, small_index, query, words):
    assert_cli_error(vnsearch("search", query, "--index", small_index), *words)


def test_cli_refuses_an_empty_query_before_loading_the_model(vnsearch, small_index, tmp_path):
    # A model path that cannot load: the query's own error must come first.
    missing = str(tmp_path / "no-model")
    assert_cli_error(vnsearch("search", " ", "--index", small_index, "--model", missing), "empty")


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["-k", "0"], ["k must be between 1 and 100, got 0"]),
        (["-k", "-3"], ["k must be between", "-3"]),
        (["-k", str(10**12)], ["k must be between", str(10**12)]),
        (["-k", "ten"], ["Invalid value", "-k"]),
        (["--offset", "-1"], ["offset must be between 0 and", "-1"]),
        (["--offset", str(MAX_OFFSET + 1)], ["offset", str(MAX_OFFSET)]),
        (["--offset", "next"], ["Invalid value", "--offset"]),
        (["--mode", "semantic"], ["unknown mode 'semantic'", *MODES]),
        (["--topic", "economy"], ["unknown topic 'economy'", *TOPICS]),
    ],
)
def test_cli_refuses_bad_search_options(vnsearch, small_index, options, words):
    assert_cli_error(vnsearch("search", "kỷ luật", "--index", small_index, *options), *words)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--limit", "0"], ["limit must be between 1 and 100, got 0"]),
        (["--limit", "-5"], ["limit must be between", "-5"]),
        (["--limit", "1000000"], ["limit must be between", "1000000"]),
        (["--limit", "all"], ["Invalid value", "--limit"]),
        (["--offset", "-1"], ["offset must be between"]),
        (["--topic", "economy"], ["unknown topic", *TOPICS]),
    ],
)
def test_cli_refuses_bad_listing_options(vnsearch, small_index, options, words):
    assert_cli_error(vnsearch("passages", "--index", small_index, *options), *words)


def test_cli_refuses_unreadable_query_files(vnsearch, small_index, tmp_path):
    legacy = tmp_path / "legacy.txt"
    legacy.write_bytes("kỷ luật đảng viên".encode("cp1258", errors="replace"))
    assert_cli_error(
        vnsearch("search", "--queries", legacy, "--index", small_index), "cannot read", "utf-8"
    )
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"query": "kỷ luật đảng viên"}\n{"query": "tham nh\n', encoding="utf-8")
    assert_cli_error(
        vnsearch("search", "--queries", broken, "--index", small_index),
        "line 2",
        "not valid JSON",
    )
    missing = tmp_path / "nowhere.jsonl"
    assert_cli_error(vnsearch("search", "--queries", missing, "--index", small_index))


def test_cli_answers_the_good_queries_of_a_file_and_names_the_bad_line(
    vnsearch, small_index, tmp_path
):
    queries = tmp_path / "queries.jsonl"  # saved by an editor that writes a byte order mark
    queries.write_text('\ufeff{"query": "kỷ luật đảng viên"}\n???\ncông đoàn\n', encoding="utf-8")
    outcome = vnsearch("search", "--queries", queries, "--index", small_index, "--json")
    assert outcome.code == 1
    first, bad, last = (json.loads(line) for line in outcome.out.splitlines())
    assert first["query"] == "kỷ luật đảng viên" and first["hits"]
    assert bad["query"] == "???" and "line 2" in bad["error"] and "no letters" in bad["error"]
    assert last["query"] == "công đoàn" and last["hits"]
    assert "line 2" in outcome.err


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('{"text": null}', ["line 1", "'text' is a string"]),
        ('{"text": 123}', ["line 1", "'text' is a string"]),
        ('["kiểm tra"]', ["line 1", "JSON object"]),
        ('{"text": "Công tác kiểm tra", "section": 5}', ["line 1", "'section' must be a string"]),
        ('{"text": "  "}', ["line 1", "no words to classify"]),
    ],
)
def test_cli_classify_refuses_rows_of_the_wrong_shape(vnsearch, tmp_path, line, words):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(line + "\n", encoding="utf-8")
    assert_cli_error(vnsearch("classify", "--input", rows, "--json"), *words)


def hits_of(outcome: Outcome) -> list[tuple[str, float]]:
    assert outcome.code == 0, outcome
    [line] = outcome.out.splitlines()
    return [(hit["passage_id"], hit["score"]) for hit in json.loads(line)["hits"]]


def test_cli_odd_but_valid_queries_find_the_same_passages(vnsearch, small_index):
    clean = "kỷ luật đảng viên"
    expected = hits_of(vnsearch("search", clean, "--index", small_index, "--json"))
    assert expected
    for variant in (
        unicodedata.normalize("NFD", clean),
        "kỷ\u200b luật\u00ad đảng\ufeff viên",
        "kỷ\x07 luật\t\x0b đảng\x1f viên",
        "  kỷ   luật\n\nđảng viên  ",
    ):
        assert hits_of(vnsearch("search", variant, "--index", small_index, "--json")) == expected


def test_cli_mixed_scripts_are_searched_not_refused(vnsearch, small_index):
    outcome = vnsearch(
        "search", "kỷ luật Партия 党员 đảng viên 🙂", "--index", small_index, "--json"
    )
    assert outcome.code == 0, outcome
    assert any(DISCIPLINE in line for line in outcome.out.splitlines())


# What Python makes of command-line bytes that are not UTF-8: lone surrogates.
BINARY_ARGUMENT = os.fsdecode(
    b"\xff\xfe k\xe1\xbb\xb7 lu\xe1\xba\xadt \xc4\x91\xe1\xba\xa3ng vi\xc3\xaan"
)


def test_cli_refuses_a_binary_query(vnsearch, small_index):
    outcome = vnsearch("search", BINARY_ARGUMENT, "--index", small_index, "--json")
    assert_cli_error(outcome, "not valid UTF-8")
    assert outcome.out == ""


@pytest.mark.parametrize("command", ["classify", "embed"])
def test_cli_refuses_binary_text_to_tag_or_embed(vnsearch, tmp_path, command):
    extra = ["--out", str(tmp_path / "vectors.npy")] if command == "embed" else ["--json"]
    assert_cli_error(vnsearch(command, BINARY_ARGUMENT, *extra), "not valid UTF-8")
    assert not (tmp_path / "vectors.npy").exists()


def test_the_installed_entry_point_exits_2_with_the_message(small_index):
    # Once through a real process: the exit code and stderr a shell script sees.
    process = subprocess.run(
        [sys.executable, "-m", "api.cli", "search", "kỷ luật", "-k", "0", "--index", small_index],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert process.returncode == 2, process.stderr
    assert process.stderr.startswith("error: k must be between 1 and 100"), process.stderr
    assert "Traceback" not in process.stderr and process.stdout == ""


def test_cli_refuses_a_missing_index(vnsearch, tmp_path):
    assert_cli_error(
        vnsearch("search", "kỷ luật", "--index", tmp_path / "none"), "no index", "vnsearch index"
    )


def test_cli_train_refuses_a_documents_folder_that_is_not_there(vnsearch, tmp_path, corpus_dir):
    labels = corpus_dir.parent / "labels" / "topics-dev.jsonl"
    rows = labels.read_text(encoding="utf-8").splitlines()[:12]
    data = tmp_path / "labels.jsonl"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    outcome = vnsearch(
        "train", "--data", data, "--documents", tmp_path / "no-corpus", "--out", tmp_path / "m"
    )
    assert_cli_error(outcome, "not a folder", "pass the corpus")
    assert not (tmp_path / "m").exists()


# -- CLI: bad files leave the index as it was --------------------------------------------


@pytest.fixture()
def bad_files(tmp_path, report_path) -> Path:
    """One folder of every kind of file that cannot be indexed, made from the real report."""
    folder = tmp_path / "bad"
    folder.mkdir()
    real = read_document(report_path)
    paragraphs = [p.text for p in split_passages(real)[8:12]]
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.md").write_text(" \n\t\n\u200b\n", encoding="utf-8")
    (folder / "binary.txt").write_bytes(b"\x00" + zlib.compress(report_path.read_bytes()))
    (folder / "legacy.txt").write_bytes("\n\n".join(paragraphs).encode("cp1258", errors="replace"))
    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    document.save(folder / "truncated.docx")
    data = (folder / "truncated.docx").read_bytes()
    (folder / "truncated.docx").write_bytes(data[: len(data) // 2])
    (folder / "truncated.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R")
    with open(folder / "huge.txt", "wb") as handle:  # sparse: no disk space used
        handle.truncate(MAX_FILE_BYTES + 1)
    with open(folder / "fifty.txt", "wb") as handle:  # the 50 MB text file
        handle.truncate(50 * 1000 * 1000)
    (folder / "loop.txt").symlink_to(folder / "loop.txt")
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to(folder, target_is_directory=True)
    return folder


BAD_FILE_REASONS = {
    "empty.txt": "empty file",
    "blank.md": "no text",
    "binary.txt": "binary file",
    "legacy.txt": "not valid UTF-8",
    "truncated.docx": ".docx",
    "truncated.pdf": ".pdf",
    "huge.txt": "MiB; the limit",
    "fifty.txt": "split it into smaller files",
    "loop.txt": "symbolic links",
}


def test_bad_files_are_named_as_skipped_and_the_index_is_unchanged(
    vnsearch, index_copy, bad_files, fixture_docs, embedder
):
    before = index_state(index_copy, embedder)
    # The already indexed documents come along unchanged, so the run as a whole succeeds.
    mixed = vnsearch("index", bad_files, fixture_docs, "--index", index_copy, "--json")
    assert mixed.code == 0, mixed
    summary = json.loads(mixed.out)
    failed = {Path(f["path"]).name: f["error"] for f in summary["files_failed"]}
    assert sorted(failed) == sorted(BAD_FILE_REASONS)
    for name, reason in BAD_FILE_REASONS.items():
        assert reason in failed[name], (name, failed[name])
    assert (summary["files_indexed"], summary["files_skipped"]) == (0, 2)
    assert index_state(index_copy, embedder) == before
    # Only bad files: each is named on stderr and the run fails, still without any change.
    only_bad = vnsearch("index", bad_files, "--index", index_copy)
    assert only_bad.code == 1, only_bad
    for name in BAD_FILE_REASONS:
        assert f"skipped {bad_files / name}:" in only_bad.err, only_bad.err
    assert "0 files indexed" in only_bad.out
    assert index_state(index_copy, embedder) == before


def test_a_folder_without_documents_or_bad_workers_is_refused_with_the_fix(
    vnsearch, index_copy, tmp_path, embedder
):
    before = index_state(index_copy, embedder)
    empty = tmp_path / "exports"
    empty.mkdir()
    (empty / "table.csv").write_text("a,b\n", encoding="utf-8")
    outcome = vnsearch("index", empty, "--index", index_copy)
    assert outcome.code == 1 and "no .txt, .md, .docx, .pdf files found" in outcome.err
    assert_cli_error(
        vnsearch("index", empty, "--index", index_copy, "--workers", "-1"), "--workers"
    )
    assert index_state(index_copy, embedder) == before


def test_cli_listing_options_read_as_a_user_types_them(vnsearch, small_index):
    upper = vnsearch("search", "kỷ luật", "--index", small_index, "--mode", "LEXICAL", "--json")
    assert upper.code == 0 and json.loads(upper.out)["mode"] == "lexical"
    facets = vnsearch("passages", "--index", small_index, "--facets", "--doc", "*hai-duong*")
    assert facets.code == 0 and len(facets.out.splitlines()) == 1
    assert_cli_error(
        vnsearch("passages", "--index", small_index, "--facets", "--topic", "inspection"),
        "drop --topic",
    )
    absolute = vnsearch(
        "passages", "--index", small_index, "--doc", "/*/hai-duong*", "--limit", "1", "--json"
    )
    assert absolute.code == 0 and "hai-duong" in absolute.out


def test_a_missing_path_is_reported_not_indexed(vnsearch, index_copy, tmp_path, embedder):
    before = index_state(index_copy, embedder)
    outcome = vnsearch("index", tmp_path / "no-such-report.txt", "--index", index_copy)
    assert outcome.code == 1 and "no-such-report.txt" in outcome.err, outcome
    assert index_state(index_copy, embedder) == before


def test_a_very_long_line_gives_paragraph_sized_passages(tmp_path, report_path):
    one_line = report_path.read_text(encoding="utf-8").replace("\n", " ")
    path = tmp_path / "one-line.txt"
    path.write_text(one_line * 40, encoding="utf-8")  # ~1 MB without a line break
    document = read_document(path)
    passages = split_passages(document)
    assert len(passages) > 100 and max(len(p.text) for p in passages) <= MAX_PASSAGE_CHARS
    # Cut, not dropped: the pieces hold (nearly: markup is cleaned) the whole text.
    assert sum(len(p.text) + 1 for p in passages) >= 0.95 * len(document.text)


# -- API: bad requests change nothing ----------------------------------------------------

BAD_QUERIES = [
    ("/search?q=", "q"),
    ("/search?q=%20%20%09", "empty"),
    ("/search?q=%00%01%02", "empty"),
    ("/search?q=%E2%80%8B%EF%BB%BF", "empty"),
    ("/search?q=dang&k=0", "k"),
    ("/search?q=dang&k=-1", "k"),
    (f"/search?q=dang&k={10**30}", "k"),
    ("/search?q=dang&k=1e3", "k"),
    ("/search?q=dang&offset=-5", "offset"),
    (f"/search?q=dang&offset={10**30}", "offset"),
    ("/search?q=dang&offset=NaN", "offset"),
    ("/search?q=dang&mode=bm25", "mode"),
    ("/search?q=dang&topic=economy", "topic"),
    ("/passages?limit=0", "limit"),
    ("/passages?limit=-1", "limit"),
    (f"/passages?limit={10**30}", "limit"),
    ("/passages?limit=twenty", "limit"),
    ("/passages?offset=-1", "offset"),
    ("/passages?topic=%00", "topic"),
    ("/documents/-1", "doc_id"),
    ("/documents/one", "doc_id"),
    ("/documents/1?limit=0", "limit"),
    ("/passages/x?context=-1", "context"),
    ("/passages/x?context=1000", "context"),
    ("/passages/" + "a" * 101, "passage_id"),
]
BAD_BODIES = [
    (b"", "body"),
    (b"not json", "JSON"),
    (b"{'texts': ['single quotes']}", "JSON"),
    ('{"texts": ["đảng viên"]'.encode(), "JSON"),
    (b"\xff\xfe{\x00", "JSON"),
    (b'{"texts": []}', "texts"),
    (b'{"texts": ["\\u0000\\u200b "]}', "no words"),
    ('{"texts": ["đảng viên", 7]}'.encode(), "texts"),
    (b'{"texts": ["x"], "texts": NaN}', "texts"),
    (b'{"texts": ["\\udcff k\\u1ef7 lu\\u1eadt"]}', "unicode"),
]


JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def client(searcher, classifier):
    with TestClient(create_app(searcher=searcher, classifier=classifier)) as test_client:
        yield test_client


def test_bad_requests_are_refused_with_a_reason_and_change_nothing(client, searcher):
    before = {
        "health": client.get("/health").json(),
        "search": client.get("/search", params={"q": STATE_QUERIES[0]}).json(),
        "documents": client.get("/documents").json(),
    }
    responses = [(path, word, client.get(path)) for path, word in BAD_QUERIES]
    responses += [
        (body.decode("latin-1"), word, client.post("/classify", content=body, headers=JSON))
        for body, word in BAD_BODIES
    ]
    problems = []
    for what, word, response in responses:
        detail = response.json().get("detail")
        if response.status_code != 422 or not isinstance(detail, str) or word not in detail:
            problems.append((what[:60], response.status_code, str(detail)[:200]))
    assert not problems, problems
    huge_id = client.get(f"/documents/{10**30}")
    assert huge_id.status_code == 404 and "no document" in huge_id.json()["detail"]
    after = {
        "health": client.get("/health").json(),
        "search": client.get("/search", params={"q": STATE_QUERIES[0]}).json(),
        "documents": client.get("/documents").json(),
    }
    assert after == before
    assert searcher.manifest.generation == before["health"]["generation"]


@pytest.mark.parametrize(
    ("query_string", "word"),
    [
        (b"q=" + b"%C4%91%E1%BA%A3ng%20" * 20_000, str(MAX_QUERY_CHARS)),
        (b"q=" + b"a" * 100_000, str(MAX_QUERY_CHARS)),
        (b"q=\x00\x01\x1b\x7f\x80\x9f", "empty"),
        (b"q=%ED%A0%80%ED%B0%80", "empty"),
    ],
    ids=["100k-vietnamese", "100k-ascii", "raw-binary", "encoded-surrogates"],
)
def test_api_refuses_huge_and_binary_queries(client, asgi_get, query_string, word):
    # straight to the ASGI app: HTTP clients refuse URLs this long or raw
    status, raw = asgi_get(client.app, b"/search?" + query_string)
    body = json.loads(raw)
    assert status == 422 and word in body["detail"], body


def test_api_odd_but_valid_queries_find_the_same_passages(client):
    clean = "kỷ luật đảng viên"

    def ids(query: str) -> list[str]:
        response = client.get("/search", params={"q": query, "k": 5})
        assert response.status_code == 200, response.text
        return [hit["passage_id"] for hit in response.json()["hits"]]

    expected = ids(clean)
    assert expected
    assert ids(unicodedata.normalize("NFD", clean)) == expected
    assert ids("kỷ\u200b luật\u00ad đảng\ufeff viên") == expected
    assert ids("kỷ\x07 luật\x1f đảng\x0b viên") == expected
    mixed = client.get("/search", params={"q": "kỷ luật Партия 党员 đảng viên 🙂"})
    assert mixed.status_code == 200 and mixed.json()["hits"]


# -- searching while a re-index runs -----------------------------------------------------


@pytest.fixture()
def served(index_copy, embedder, classifier):
    """The app over a copy of the small index, on a loopback port, in this process."""
    import uvicorn

    from eval.load_test import free_loopback_port

    port = free_loopback_port()
    app = create_app(searcher=Searcher(index_copy, embedder), classifier=classifier)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", index_copy
    server.should_exit = True
    thread.join(timeout=10)


def test_searches_keep_succeeding_while_the_index_is_rebuilt(served, fixture_docs, corpus_dir):
    url, root = served
    old_generation = read_manifest(root).generation
    added = corpus_dir / ADDED_DOCUMENT
    command = [sys.executable, "-m", "api.cli", "index", str(fixture_docs), str(added)]
    command += ["--index", str(root), "--json"]
    errors: list[str] = []
    answered = 0
    with httpx.Client(base_url=url, timeout=30) as session:

        def search(query: str) -> dict | None:
            nonlocal answered
            try:
                response = session.get("/search", params={"q": query, "k": 5})
            except httpx.HTTPError as exc:
                errors.append(f"{query}: {exc!r}")
                return None
            answered += 1
            if response.status_code != 200 or not response.json()["hits"]:
                errors.append(f"{query}: {response.status_code} {response.text[:200]}")
                return None
            return response.json()

        writer = subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            while writer.poll() is None:
                for query in STATE_QUERIES:
                    search(query)
                time.sleep(0.05)
            out, err = writer.communicate(timeout=5)
        finally:
            if writer.poll() is None:
                writer.kill()
                writer.wait()
        assert writer.returncode == 0, err
        assert '"files_indexed": 1' in out, out
        # The app checks for a newer generation at most once a second.
        deadline = time.monotonic() + 10
        generation = old_generation
        while generation == old_generation and time.monotonic() < deadline:
            search(STATE_QUERIES[0])
            generation = session.get("/health").json()["generation"]
            time.sleep(0.2)
        assert generation == read_manifest(root).generation > old_generation
        title_words = Path(added).read_text(encoding="utf-8").split("\n", 1)[0][:60]
        new_hits = search(title_words.lstrip("# "))
    assert not errors, errors[:5]
    assert answered > len(STATE_QUERIES)
    assert new_hits and any(hit["doc"].endswith(ADDED_DOCUMENT) for hit in new_hits["hits"])
