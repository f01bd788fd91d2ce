"""Incremental indexing: files keyed by path and content hash, written as a new generation."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Protocol

import numpy as np

from index.dense import build_dense, resolve_kind, save_dense
from index.lexical import LexicalIndex, stored_analysis
from index.store import (
    COPIES_FILE,
    Manifest,
    ModelInfo,
    check_model,
    connect,
    first_copies,
    generation_dir,
    new_generation,
    publish_generation,
    read_manifest,
    save_copies,
    writer_lock,
)
from models.embedder import embed_under_headings, passage_input
from nlp.errors import DocumentReadError
from nlp.paragraphs import Passage, innermost_heading
from nlp.reader import ManifestTitles, ReadFailure, iter_files
from nlp.restore import DiacriticRestorer
from nlp.segment import (
    LEXICAL_ANALYSIS,
    BackgroundSegmenter,
    BatchScorer,
    SegmentedDocument,
    joined,
    section_tokens,
    segment_texts,
    token_terms,
)

EMBED_BATCH_PASSAGES = 256
# The first batch is this small, and each next one twice the one before up to the above, so
# that the encoder starts early instead of waiting for a full batch to be segmented.
FIRST_EMBED_PASSAGES = 32
# A document of at least this many passages, read in this process, is embedded before its
# words are segmented (one long report would otherwise be segmented while the encoder waits).
EARLY_EMBED_PASSAGES = 64
# With segmenting processes, this many files per process are handed to them ahead of the one
# being embedded and stored, so that they never wait for the indexing process.
SEGMENT_AHEAD_FILES = 4
# What the workers' topic scoring imports (scikit-learn: about 1.3 s per process otherwise).
SCORER_MODULES = ("models.topics", "sklearn.feature_extraction.text", "sklearn.preprocessing")
# Bump when reading, splitting or normalisation changes what passages a file gives: every file
# is then re-read once (its unchanged paragraphs keep their ids and stored vectors).
PASSAGE_FORMAT = 5


class PassageEmbedder(Protocol):
    """What the indexer needs from an embedder (models.embedder.Embedder)."""

    name: str
    dim: int
    fingerprint: str

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...


class PassageClassifier(Protocol):
    """What the indexer needs from a topic classifier (models.topics.TopicClassifier)."""

    embedding_fingerprint: str | None

    def predict(
        self,
        texts: Sequence[str],
        tokens: Sequence[Sequence[str]] | None = None,
        sections: Sequence[str] | None = None,
        embeddings: np.ndarray | None = None,
        text_logits: np.ndarray | None = None,
        documents: Sequence[int] | None = None,
    ) -> list: ...


@dataclass
class IndexReport:
    """What one `index_paths` run did."""

    files_indexed: int = 0
    files_skipped: int = 0
    files_failed: list[ReadFailure] = field(default_factory=list)
    files_pruned: int = 0
    passages: int = 0
    passages_embedded: int = 0
    seconds: float = 0.0


def file_sha256(path: str) -> str:
    """Return the hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_segment_workers(device: str) -> int:
    """Processes that read and segment beside the encoder: none on a CPU, one per core on a GPU.

    On the CPU the int8 encoder already uses every core; a segmenting process beside it only
    took cores from it and paid its own start-up: `eval.bench_index --n 240` went from 66.4
    passages/s with one worker to 102.3 in-process (1,001 passages: 94.1 to 107.1). Beside a
    GPU, one process per core beat one fewer (H200, 16 cores, 14,025 passages: 7.7 s against
    9.2 s end to end).
    """
    if device == "cpu":
        return 0
    return max(1, os.cpu_count() or 1)


def _worker_scorer(
    classifier: PassageClassifier | None, segment_workers: int
) -> BatchScorer | None:
    """The classifier's text part, to run in the segmenting processes beside the tokens.

    Only for a classifier loaded from a folder (`TopicClassifier.load`), which each worker
    loads once; the indexing process then adds the passage vectors' part alone.
    """
    source = getattr(classifier, "source", None)
    if segment_workers <= 0 or not source or not hasattr(classifier, "text_logits"):
        return None
    return partial(_text_logits_in_worker, source)


@cache
def _worker_classifier(source: str):  # noqa: ANN202 - a TopicClassifier, imported lazily
    from models.topics import TopicClassifier

    return TopicClassifier.load(source)


def _text_logits_in_worker(
    source: str, texts: Sequence[str], tokens: list[list[str]], sections: Sequence[str]
) -> np.ndarray:
    # The indexer reads every paragraph within its document (`predict(documents=...)`).
    return _worker_classifier(source).text_logits(texts, tokens, sections, within_documents=True)


def passage_ids(doc_key: str, passages: Sequence[Passage]) -> list[str]:
    """Stable ids: a hash of the document key, what the passage is embedded as (its text under
    its innermost heading, `passage_input`) and its repeat count within the file.

    Editing one paragraph (or the heading above it) changes only the ids whose vectors must be
    recomputed, so unchanged paragraphs keep their ids and stored vectors when a file changes.
    """
    seen: dict[str, int] = {}
    ids = []
    for passage in passages:
        embedded = passage_input(passage.text, passage.section)
        nth = seen.get(embedded, 0)
        seen[embedded] = nth + 1
        digest = hashlib.sha1(f"{doc_key}\x00{embedded}\x00{nth}".encode()).hexdigest()
        ids.append(digest[:16])
    return ids


@dataclass
class _PendingDocument:
    key: str
    path: str
    sha256: str
    document: SegmentedDocument
    ids: list[str]


def index_paths(
    paths: Iterable[str | os.PathLike[str]],
    root: str | os.PathLike[str],
    embedder: PassageEmbedder,
    classifier: PassageClassifier | None = None,
    *,
    prune: bool = False,
    dense_kind: str = "auto",
    segment_workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> IndexReport:
    """Add, update and (with `prune`) remove documents in the index at `root`.

    Unchanged files (same path and content hash) are skipped; a changed file replaces its
    passages, re-embedding only paragraphs whose text changed. All writes go to a new
    generation that becomes current only when complete.

    Args:
        paths: Files and folders to index.
        root: The index folder (created when missing).
        embedder: Must match the model the index was built with.
        classifier: Tags every passage with a topic when given.
        prune: Drop documents whose files no longer exist.
        dense_kind: One of `index.dense.DENSE_KINDS` (`index.dense.build_dense`); an
            unchanged index whose kind differs is rebuilt without re-embedding.
        segment_workers: Processes that segment words while the embedder runs (0: segment
            in this process, between embedding batches).
        progress: Called with (files done, files total).

    Returns:
        Counts of what was done.

    Raises:
        IndexError_: The index was built with another model, or another writer holds it.
    """
    started = time.perf_counter()
    root = Path(root)
    model = ModelInfo(embedder.name, int(embedder.dim), embedder.fingerprint)
    report = IndexReport()
    files = list(iter_files(paths))
    with writer_lock(root):
        manifest = read_manifest(root)
        if manifest is not None:
            check_model(manifest, model, root)
        number, tmp = new_generation(root, manifest)
        conn = connect(tmp / "passages.db")
        try:
            score = _worker_scorer(classifier, segment_workers)
            preload = SCORER_MODULES if score is not None else ()
            with BackgroundSegmenter(segment_workers, score, preload) as segmenter:
                _apply_files(conn, files, embedder, classifier, report, segmenter, progress)
            if prune:
                report.files_pruned = _prune(conn)
            conn.commit()
            kind = resolve_kind(dense_kind, _count(conn))
            unchanged = not (report.files_indexed or report.files_pruned)
            if (
                manifest is not None
                and unchanged
                and kind == manifest.dense_kind
                and stored_analysis(generation_dir(root, manifest.generation) / "lexical")
                == LEXICAL_ANALYSIS
            ):
                conn.close()  # nothing changed: keep the current generation as it is
                shutil.rmtree(tmp, ignore_errors=True)
                report.passages = manifest.passages
                report.seconds = time.perf_counter() - started
                return report
            counts = _finish_generation(conn, tmp, kind, model.dim)
        finally:
            conn.close()
        documents, passages, kind = counts
        publish_generation(
            root,
            tmp,
            Manifest(number, model, documents=documents, passages=passages, dense_kind=kind),
        )
    report.passages = passages
    report.seconds = time.perf_counter() - started
    return report


def _count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT COUNT(*) FROM passages").fetchone()[0]


def _apply_files(
    conn: sqlite3.Connection,
    files: list[str],
    embedder: PassageEmbedder,
    classifier: PassageClassifier | None,
    report: IndexReport,
    segmenter: BackgroundSegmenter,
    progress: Callable[[int, int], None] | None,
) -> None:
    pool = ThreadPoolExecutor(1, thread_name_prefix="vnsearch-embed")
    try:
        batches = _EmbeddingPipeline(conn, embedder, classifier, report, pool)
        _feed_files(conn, files, report, segmenter, progress, batches)
    finally:  # on an error or Ctrl-C, embeddings not yet started are dropped
        pool.shutdown(cancel_futures=True)


def _feed_files(
    conn: sqlite3.Connection,
    files: list[str],
    report: IndexReport,
    segmenter: BackgroundSegmenter,
    progress: Callable[[int, int], None] | None,
    batches: _EmbeddingPipeline,
) -> None:
    """Read, split and segment each changed file and hand whole documents to `batches`."""
    titles = ManifestTitles()
    pending: list[_PendingDocument] = []
    pending_passages = 0
    # Changed files handed to the segmenting processes (read, split, segmented, scored there)
    # ahead of the one being embedded and stored; none ahead without such processes.
    ahead = SEGMENT_AHEAD_FILES * segmenter.workers
    in_flight: deque[tuple[str, str, str, Callable[[], SegmentedDocument]]] = deque()
    for done, path in enumerate(files, start=1):
        key = os.path.abspath(path)
        try:
            sha = f"{file_sha256(path)}:p{PASSAGE_FORMAT}" if os.path.isfile(path) else ""
            row = conn.execute("SELECT sha256 FROM documents WHERE key = ?", (key,)).fetchone()
            if row is not None and row["sha256"] == sha:
                report.files_skipped += 1
            else:
                in_flight.append(
                    (
                        key,
                        str(path),
                        sha,
                        segmenter.submit(path, titles.title_for(path), partial(batches.early, key)),
                    )
                )
        except OSError as exc:
            report.files_failed.append(ReadFailure(path=str(path), error=str(exc.strerror)))
        while len(in_flight) > (ahead if done < len(files) else 0):
            key, name, sha, ready = in_flight.popleft()
            try:
                document = ready()
            except DocumentReadError as exc:
                report.files_failed.append(ReadFailure(path=name, error=exc.reason))
                continue
            except OSError as exc:
                report.files_failed.append(ReadFailure(path=name, error=str(exc.strerror)))
                continue
            ids = passage_ids(key, document.passages)
            pending.append(_PendingDocument(key, name, sha, document, ids))
            pending_passages += len(ids)
            if pending_passages >= batches.wanted():
                batches.submit(pending)
                pending, pending_passages = [], 0
        if progress is not None:
            progress(done, len(files))
    if pending:
        batches.submit(pending)
    batches.close()


@dataclass
class _Embedding:
    """The vectors of some passages: those already stored, and a future for the others."""

    ids: list[str]
    known: dict[str, np.ndarray]
    missing: list[int]
    future: Future | None
    _vectors: list[np.ndarray] | None = field(default=None, init=False, repr=False)
    _taken: int = field(default=0, init=False, repr=False)

    def take(self, count: int) -> list[np.ndarray]:
        """Return the next `count` vectors, in order; the first call waits for the encoder."""
        if self._vectors is None:
            fresh = self.future.result() if self.future is not None else None
            self._vectors = [self.known.get(pid) for pid in self.ids]
            for j, n in enumerate(self.missing):
                self._vectors[n] = fresh[j]
        self._taken += count
        return self._vectors[self._taken - count : self._taken]


class _EmbeddingPipeline:
    """Embeds documents in a background thread while this thread goes on.

    The encoder (ONNX Runtime or torch) leaves Python while it computes, so reading and
    segmenting the next files, tagging and storing the batch before run beside it instead of
    between its batches. At most one batch waits to be stored; embedding stays in file order.
    A long document read in this process is embedded as soon as it is split (`early`), before
    its words are segmented, since embedding needs only its passages' text.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        embedder: PassageEmbedder,
        classifier: PassageClassifier | None,
        report: IndexReport,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.conn, self.embedder, self.classifier, self.report = conn, embedder, classifier, report
        self.pool = pool
        self.waiting: tuple[list[_PendingDocument], list[_Embedding]] | None = None
        self.submitted = 0
        self._early: dict[str, _Embedding] = {}

    def wanted(self) -> int:
        """Passages to gather before the next batch is submitted."""
        return min(EMBED_BATCH_PASSAGES, FIRST_EMBED_PASSAGES << min(self.submitted, 16))

    def early(self, key: str, passages: list[Passage]) -> None:
        """Start embedding a long document (key `key`) before it is segmented."""
        if len(passages) >= EARLY_EMBED_PASSAGES:
            self._early[key] = self._start(passage_ids(key, passages), passages)

    def submit(self, pending: list[_PendingDocument]) -> None:
        """Start embedding `pending` (what was not started early), then store the batch before."""
        parts = [self._early.pop(doc.key, None) for doc in pending]
        rest = [doc for doc, part in zip(pending, parts, strict=True) if part is None]
        if rest:
            ids = [i for doc in rest for i in doc.ids]
            together = self._start(ids, [p for doc in rest for p in doc.document.passages])
            parts = [together if part is None else part for part in parts]
        self._store_waiting()
        self.waiting = (pending, parts)
        self.submitted += 1

    def close(self) -> None:
        """Store the last batch."""
        self._store_waiting()

    def _start(self, ids: list[str], passages: Sequence[Passage]) -> _Embedding:
        known = _stored_vectors(self.conn, ids, self.embedder.dim)
        missing = [n for n, pid in enumerate(ids) if pid not in known]
        future = None
        if missing:
            texts = [passages[n].text for n in missing]
            sections = [passages[n].section for n in missing]
            future = self.pool.submit(embed_under_headings, self.embedder, texts, sections)
        self.report.passages_embedded += len(missing)
        return _Embedding(ids, known, missing, future)

    def _store_waiting(self) -> None:
        if self.waiting is None:
            return
        pending, parts = self.waiting
        self.waiting = None
        # Each document takes its vectors from its own early part or, in order, from the part
        # the batch's other documents share.
        vectors = [
            vector
            for doc, part in zip(pending, parts, strict=True)
            for vector in part.take(len(doc.ids))
        ]
        _store_documents(self.conn, pending, vectors, self.classifier, self.embedder, self.report)


def _store_documents(
    conn: sqlite3.Connection,
    pending: list[_PendingDocument],
    vectors: list[np.ndarray],
    classifier: PassageClassifier | None,
    embedder: PassageEmbedder,
    report: IndexReport,
) -> None:
    """Tag and store a batch of segmented documents with their passages' vectors (in order);
    the classifier reads the text logits the segmenting processes computed, when they did."""
    passages = [p for doc in pending for p in doc.document.passages]
    ids = [i for doc in pending for i in doc.ids]
    tokens = [t for doc in pending for t in doc.document.tokens]
    texts = [p.text for p in passages]
    scored = [doc.document.scores for doc in pending]
    text_logits = np.concatenate(scored) if all(s is not None for s in scored) else None
    topics: list = [None] * len(passages)
    if classifier is not None:
        # The classifier reads the passage vectors too; reuse them when they come from its model.
        same_model = getattr(classifier, "embedding_fingerprint", None) == embedder.fingerprint
        topics = classifier.predict(
            texts,
            tokens=tokens,
            sections=[p.section for p in passages],
            embeddings=np.stack(vectors).astype(np.float32) if same_model and vectors else None,
            text_logits=text_logits,
            # Whole documents are in the batch: each paragraph is read within its document.
            documents=[n for n, doc in enumerate(pending) for _ in doc.ids],
        )
    offset = 0
    for doc in pending:
        conn.execute("DELETE FROM documents WHERE key = ?", (doc.key,))
        cursor = conn.execute(
            "INSERT INTO documents (key, path, title, sha256, n_passages, indexed_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                doc.key,
                doc.path,
                doc.document.passages[0].title,
                doc.sha256,
                len(doc.ids),
                time.time(),
            ),
        )
        doc_id = cursor.lastrowid
        rows = []
        for n, passage in enumerate(doc.document.passages):
            i = offset + n
            topic = topics[i]
            rows.append(
                (
                    ids[i],
                    doc_id,
                    passage.paragraph,
                    passage.start,
                    passage.end,
                    passage.section,
                    passage.text,
                    " ".join(tokens[i]),
                    topic.topic if topic is not None else None,
                    json.dumps(topic.scores) if topic is not None else None,
                    np.asarray(vectors[i], dtype=np.float32).tobytes(),
                )
            )
        conn.executemany(
            "INSERT INTO passages (passage_id, doc_id, paragraph, start, end, section, text, "
            "tokens, topic, topic_scores, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        offset += len(doc.ids)
        report.files_indexed += 1


def _stored_vectors(conn: sqlite3.Connection, ids: list[str], dim: int) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT passage_id, vector FROM passages WHERE passage_id IN ({marks})", chunk
        ):
            vector = np.frombuffer(row["vector"], dtype=np.float32)
            if vector.shape == (dim,):
                found[row["passage_id"]] = vector
    return found


def _prune(conn: sqlite3.Connection) -> int:
    gone = [
        row["key"]
        for row in conn.execute("SELECT key FROM documents")
        if not os.path.exists(row["key"])
    ]
    conn.executemany("DELETE FROM documents WHERE key = ?", [(key,) for key in gone])
    return len(gone)


def _heading_tokens(conn: sqlite3.Connection, headings: set[str]) -> dict[str, list[str]]:
    """The segmented words of each heading, segmenting only those the database has not seen
    (a generation's database starts as a copy of the previous one's)."""
    known = {
        row["heading"]: row["tokens"].split(" ") if row["tokens"] else []
        for row in conn.execute("SELECT heading, tokens FROM headings")
    }
    missing = sorted(headings - known.keys() - {""})
    for heading, tokens in zip(missing, segment_texts(missing), strict=True):
        known[heading] = tokens
    conn.executemany(
        "INSERT INTO headings (heading, tokens) VALUES (?, ?)",
        [(heading, joined(known[heading])) for heading in missing],
    )
    conn.commit()
    return {"": [], **known}


def _finish_generation(
    conn: sqlite3.Connection, folder: Path, kind: str, dim: int
) -> tuple[int, int, str]:
    rows = conn.execute("SELECT id, tokens, section, vector FROM passages ORDER BY id").fetchall()
    rowids = np.array([row["id"] for row in rows], dtype=np.int64)
    token_lists = [row["tokens"].split(" ") if row["tokens"] else [] for row in rows]
    headings = _heading_tokens(conn, {innermost_heading(row["section"]) for row in rows})
    lexical_tokens = [
        tokens + section_tokens(row["section"]) + headings[innermost_heading(row["section"])]
        for tokens, row in zip(token_lists, rows, strict=True)
    ]
    if rows:
        vectors = np.stack([np.frombuffer(row["vector"], dtype=np.float32) for row in rows])
    else:
        vectors = np.zeros((0, dim), dtype=np.float32)
    # FAISS builds outside Python, so the dense index is built beside the lexical ones.
    with ThreadPoolExecutor(1, thread_name_prefix="vnsearch-dense") as pool:
        dense = pool.submit(
            lambda: save_dense(build_dense(vectors, rowids, kind), folder / "dense.faiss")
        )
        lexical = LexicalIndex.build_from_tokens(
            lexical_tokens, rowids, token_terms, LEXICAL_ANALYSIS
        )
        lexical.save(folder / "lexical")
        DiacriticRestorer.build(token_lists).save(folder / "restore.json")
        save_copies(folder / COPIES_FILE, first_copies(conn))
        dense.result()
    documents = conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
    return documents, len(rows), kind
