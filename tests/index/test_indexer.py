import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from index.indexer import index_paths
from index.search import Searcher
from index.store import read_manifest
from nlp.errors import ModelError


@pytest.fixture()
def docs(tmp_path, fixture_docs):
    folder = tmp_path / "docs"
    shutil.copytree(fixture_docs, folder)
    return folder


def test_unchanged_files_are_not_re_embedded(tmp_path, docs, embedder):
    root = tmp_path / "idx"
    first = index_paths([docs], root, embedder)
    assert first.files_indexed == 2 and first.passages_embedded == first.passages > 0
    again = index_paths([docs], root, embedder)
    assert (again.files_indexed, again.files_skipped, again.passages_embedded) == (0, 2, 0)
    assert again.passages == first.passages


def test_another_dense_kind_rebuilds_an_unchanged_index_without_embedding(tmp_path, docs, embedder):
    root = tmp_path / "idx"
    index_paths([docs], root, embedder)
    assert read_manifest(root).dense_kind == "fastscan"
    switched = index_paths([docs], root, embedder, dense_kind="flat")
    assert switched.passages_embedded == 0 and read_manifest(root).dense_kind == "flat"
    assert Searcher(root, embedder).search("kỷ luật đảng viên", k=1).hits


def test_a_changed_file_re_embeds_only_its_changed_paragraph(tmp_path, docs, embedder):
    root = tmp_path / "idx"
    index_paths([docs], root, embedder)
    searcher = Searcher(root, embedder)
    before = {p.passage_id for p in searcher.list_passages(limit=100, doc="*hai-duong*")[1]}
    report = next(docs.glob("hai-duong*"))
    text = report.read_text(encoding="utf-8")
    report.write_text(text.replace("thi hành kỷ luật 151", "thi hành kỷ luật 152"), "utf-8")
    changed = index_paths([docs], root, embedder)
    assert (changed.files_indexed, changed.files_skipped, changed.passages_embedded) == (1, 1, 1)
    searcher.reload_if_changed()
    after = {p.passage_id for p in searcher.list_passages(limit=100, doc="*hai-duong*")[1]}
    assert len(before - after) == 1 and len(after - before) == 1
    assert "152 đảng viên" in searcher.search("kỷ luật đảng viên", k=1).hits[0].text


def test_an_index_with_an_older_lexical_analysis_is_rebuilt_without_embedding(
    tmp_path, docs, embedder
):
    import json

    from index.lexical import ANALYSIS_FILE, stored_analysis
    from index.store import generation_dir
    from nlp.segment import LEXICAL_ANALYSIS

    root = tmp_path / "idx"
    index_paths([docs], root, embedder)
    lexical = generation_dir(root, read_manifest(root).generation) / "lexical"
    assert stored_analysis(lexical) == LEXICAL_ANALYSIS
    (lexical / ANALYSIS_FILE).write_text(json.dumps({"analysis": 1}), "utf-8")
    before = read_manifest(root).generation
    again = index_paths([docs], root, embedder)
    assert again.passages_embedded == 0 and read_manifest(root).generation == before + 1
    lexical = generation_dir(root, read_manifest(root).generation) / "lexical"
    assert stored_analysis(lexical) == LEXICAL_ANALYSIS
    assert Searcher(root, embedder).search("thoại", mode="lexical", k=1).hits


def test_prune_drops_files_that_are_gone(tmp_path, docs, embedder):
    root = tmp_path / "idx"
    index_paths([docs], root, embedder)
    law = next(docs.glob("Luat-*"))
    law.unlink()
    kept = index_paths([docs], root, embedder)
    assert read_manifest(root).documents == 2 and kept.files_pruned == 0
    pruned = index_paths([docs], root, embedder, prune=True)
    assert pruned.files_pruned == 1 and read_manifest(root).documents == 1


def test_bad_files_are_reported_and_the_rest_indexed(tmp_path, docs, embedder):
    (docs / "empty.txt").write_bytes(b"")
    (docs / "scan.pdf").write_bytes(b"%PDF-1.4 truncated")
    report = index_paths([docs], tmp_path / "idx", embedder)
    assert sorted(f.path.rsplit("/", 1)[-1] for f in report.files_failed) == [
        "empty.txt",
        "scan.pdf",
    ]
    assert report.files_indexed == 2


def test_killing_the_indexer_mid_write_keeps_the_old_index(tmp_path, docs, embedder):
    root = tmp_path / "idx"
    index_paths([next(docs.glob("hai-duong*"))], root, embedder)
    old = Searcher(root, embedder).search("kỷ luật đảng viên", k=3).to_json()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "api.cli", "index", str(docs), "--index", str(root)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(root.glob("gen-*.tmp")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    assert list(root.glob("gen-*.tmp")), f"the indexer ended before the kill: {stderr.decode()}"
    assert read_manifest(root).generation == 1
    assert Searcher(root, embedder).search("kỷ luật đảng viên", k=3).to_json() == old
    rerun = index_paths([docs], root, embedder)
    assert rerun.files_indexed == 1 and rerun.files_skipped == 1
    assert not list(root.glob("gen-*.tmp"))


class _FailingEmbedder:
    """Delegates to the real embedder, and fails on its `fail_on`-th call."""

    def __init__(self, embedder, fail_on: int) -> None:
        self.inner, self.fail_on, self.calls = embedder, fail_on, 0
        self.name, self.dim, self.fingerprint = embedder.name, embedder.dim, embedder.fingerprint

    def embed_passages(self, texts):
        self.calls += 1
        if self.calls == self.fail_on:
            raise ModelError("embedding failed: out of memory")
        return self.inner.embed_passages(texts)


def test_an_encoder_failure_in_the_background_keeps_the_old_index(tmp_path, docs, embedder):
    root = tmp_path / "idx"
    law = next(docs.glob("Luat-*"))
    index_paths([law], root, embedder)
    old = Searcher(root, embedder).search("tham nhũng", k=3).to_json()
    report = next(docs.glob("hai-duong*"))
    shutil.copy(report, docs / "copy-of-the-report.txt")
    failing = _FailingEmbedder(embedder, fail_on=2)
    # The first new file is embedded and waits to be stored while the second batch fails.
    with pytest.raises(ModelError, match="out of memory"):
        index_paths([docs], root, failing)
    assert failing.calls == 2
    assert read_manifest(root).generation == 1
    assert Searcher(root, embedder).search("tham nhũng", k=3).to_json() == old
    again = index_paths([docs], root, embedder)
    assert again.files_indexed == 2 and again.files_skipped == 1


def test_long_documents_are_embedded_before_they_are_segmented(
    tmp_path, docs, embedder, monkeypatch
):
    import index.indexer as indexer

    started = []
    original_start = indexer._EmbeddingPipeline._start

    def recording_start(self, ids, passages):
        started.append(len(ids))
        return original_start(self, ids, passages)

    late = index_paths([docs], tmp_path / "late", embedder, segment_workers=0)
    monkeypatch.setattr(indexer._EmbeddingPipeline, "_start", recording_start)
    monkeypatch.setattr(indexer, "EARLY_EMBED_PASSAGES", 20)
    early = index_paths([docs], tmp_path / "early", embedder, segment_workers=0)
    # Each fixture document is long enough: each was started on its own, before segmenting.
    assert sorted(started) == sorted(len(p) for p in _passages_by_document(tmp_path / "early"))
    assert early.passages_embedded == late.passages_embedded == late.passages
    vectors = {name: _stored_vectors(tmp_path / name) for name in ("early", "late")}
    assert vectors["early"].keys() == vectors["late"].keys()
    for pid, vector in vectors["early"].items():  # int8 vectors depend a little on the batch
        assert float(vector @ vectors["late"][pid]) > 0.99

    report = next(docs.glob("hai-duong*"))
    text = report.read_text(encoding="utf-8")
    report.write_text(text.replace("thi hành kỷ luật 151", "thi hành kỷ luật 152"), "utf-8")
    changed = index_paths([docs], tmp_path / "early", embedder, segment_workers=0)
    assert (changed.files_indexed, changed.passages_embedded) == (1, 1)


def _stored_rows(root) -> list[tuple[int, str, bytes]]:
    """(document id, passage id, vector bytes) of every stored passage, by document."""
    import sqlite3

    from index.store import generation_dir

    folder = generation_dir(root, read_manifest(root).generation)
    with sqlite3.connect(folder / "passages.db") as db:
        query = "SELECT doc_id, passage_id, vector FROM passages ORDER BY doc_id, id"
        return db.execute(query).fetchall()


def _passages_by_document(root) -> list[list[str]]:
    by_document: dict[int, list[str]] = {}
    for doc_id, pid, _ in _stored_rows(root):
        by_document.setdefault(doc_id, []).append(pid)
    return list(by_document.values())


def _stored_vectors(root) -> dict:
    import numpy as np

    return {pid: np.frombuffer(blob, dtype=np.float32) for _, pid, blob in _stored_rows(root)}


def test_second_writer_is_refused(tmp_path, docs, embedder):
    from index.store import writer_lock
    from nlp.errors import IndexError_

    root = tmp_path / "idx"
    with writer_lock(root), pytest.raises(IndexError_, match="another vnsearch"):
        index_paths([docs], root, embedder)


def test_an_index_path_that_is_a_file_or_a_folder_of_documents_is_refused(tmp_path, docs, embedder):
    from nlp.errors import IndexError_

    a_file = tmp_path / "idxfile"
    a_file.write_text("", encoding="utf-8")
    with pytest.raises(IndexError_, match="is a file, not an index folder"):
        index_paths([docs], a_file, embedder)
    with pytest.raises(IndexError_, match="is a file, not an index folder"):
        Searcher(a_file, embedder)
    before = sorted(p.name for p in docs.iterdir())
    with pytest.raises(IndexError_, match="is not a vnsearch index.*new or empty folder"):
        index_paths([docs], docs, embedder)
    assert sorted(p.name for p in docs.iterdir()) == before  # nothing written among them


def test_passages_are_embedded_under_their_innermost_heading(small_index, embedder):
    import numpy as np

    from index.store import connect, generation_dir
    from models.embedder import passage_input

    manifest = read_manifest(small_index)
    conn = connect(generation_dir(small_index, manifest.generation) / "passages.db", readonly=True)
    row = conn.execute(
        "SELECT text, section, vector FROM passages WHERE instr(text, ?) > 0",
        ("thi hành kỷ luật 151 đảng viên",),
    ).fetchone()
    embedded = passage_input(row["text"], row["section"])
    assert embedded.startswith("3. Công tác kiểm tra, giám sát và thi hành kỷ luật Đảng. Cấp uỷ")
    stored = np.frombuffer(row["vector"], dtype=np.float32)
    # int8 ONNX quantises activations per batch, so a vector computed alone differs a little
    with_heading, alone = embedder.embed_passages([embedded, row["text"]])
    assert float(stored @ with_heading) > 0.99
    assert float(stored @ with_heading) > float(stored @ alone) + 0.01


def test_segmentation_runs_in_process_beside_a_cpu_encoder():
    from index.indexer import default_segment_workers

    assert default_segment_workers("cpu") == 0  # the int8 encoder already uses every core
    assert default_segment_workers("cuda") >= 1


def test_segmenting_processes_ahead_give_the_same_index(tmp_path, docs, embedder, classifier):
    # Small batches, so that several are segmented in worker processes ahead of the one being
    # embedded and stored, each computing the classifier's text logits beside the tokens;
    # every passage must come out as with in-process segmentation and classification.
    import index.indexer as indexer

    def stored(root):
        searcher = Searcher(root, embedder)
        total, rows = searcher.list_passages(limit=100)
        while len(rows) < total:
            rows += searcher.list_passages(limit=100, offset=len(rows))[1]
        return [
            (p.passage_id, p.text, p.topic, {k: round(v, 5) for k, v in p.topic_scores.items()})
            for p in rows
        ]

    assert indexer._worker_scorer(classifier, 2) is not None  # text logits in the workers
    assert indexer._worker_scorer(classifier, 0) is None
    original = indexer.EMBED_BATCH_PASSAGES
    indexer.EMBED_BATCH_PASSAGES = 8  # the same batches both ways: int8 vectors depend on them
    try:
        index_paths([docs], tmp_path / "in-process", embedder, classifier, segment_workers=0)
        report = index_paths([docs], tmp_path / "ahead", embedder, classifier, segment_workers=2)
    finally:
        indexer.EMBED_BATCH_PASSAGES = original
    assert report.files_indexed == 2
    assert stored(tmp_path / "ahead") == stored(tmp_path / "in-process")
    for name in ("in-process", "ahead"):
        assert Searcher(tmp_path / name, embedder).search("kỷ luật đảng viên", k=1).hits
