"""Search an index: query analysis, dense and lexical legs, fusion, filters, highlights."""

from __future__ import annotations

import fnmatch
import html
import json
import re
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from index.dense import load_dense, search_dense
from index.fusion import DEFAULT_RRF_K, reciprocal_rank_fusion, score_fusion
from index.lexical import LexicalIndex
from index.store import (
    COPIES_FILE,
    Manifest,
    ModelInfo,
    check_model,
    connect,
    generation_dir,
    load_copies,
    read_manifest,
)
from nlp.errors import IndexError_, InvalidInputError
from nlp.normalize import fold_accents, has_diacritics, has_words, normalize_text
from nlp.restore import DiacriticRestorer
from nlp.segment import query_terms

MODES = ("hybrid", "dense", "lexical")
TOPICS = ("ideology", "organisation", "inspection", "mass_mobilisation", "anti_corruption", "other")
MAX_QUERY_CHARS = 1000
MAX_K = 100
MAX_OFFSET = 10_000
SNIPPET_WORDS = 40


class QueryEmbedder(Protocol):
    """What search needs from an embedder (models.embedder.Embedder)."""

    name: str
    dim: int
    fingerprint: str

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...


FUSIONS = ("score", "rrf")


@dataclass(frozen=True)
class FusionSettings:
    """How the hybrid mode fuses its legs.

    Chosen on the two halves of eval/queries/search-eval.jsonl (see eval/RESULTS.md): a
    weighted sum of min-max normalised scores beat both legs on each half, where plain
    reciprocal rank fusion did not; with headings in the passage vectors and BM25 b = 0.3,
    lexical weight 0.4 beat 0.2 and 0.3 on both halves. With the innermost heading's words
    among each passage's lexical terms too, 0.5 beat 0.3 and 0.4 on both halves (0.6: 0.581 /
    0.574 against 0.601 / 0.573).
    """

    method: str = "score"
    depth: int = 100
    lexical_weight: float = 0.5
    dense_weight: float = 0.5
    rrf_k: float = DEFAULT_RRF_K


@dataclass
class Hit:
    """One search result."""

    rank: int
    score: float
    passage_id: str
    doc: str
    title: str
    section: str
    paragraph: int
    text: str
    highlight: str
    topic: str | None
    topic_scores: dict[str, float] | None

    def to_json(self) -> dict:
        """Return the CLI/API JSON object of this hit."""
        return dict(vars(self))


@dataclass
class SearchResult:
    """The answer to one query."""

    query: str
    mode: str
    total: int
    hits: list[Hit] = field(default_factory=list)

    def to_json(self) -> dict:
        """Return the CLI/API JSON object: query, mode, total, hits."""
        return {
            "query": self.query,
            "mode": self.mode,
            "total": self.total,
            "hits": [hit.to_json() for hit in self.hits],
        }


def validate_query(query: str) -> str:
    """Return the normalised query, or raise InvalidInputError naming what is wrong."""
    if not isinstance(query, str):
        raise InvalidInputError("the query must be text")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            "the query is not valid UTF-8 text; type it again or save the file as UTF-8"
        ) from None
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInputError(
            f"the query has {len(query)} characters; the limit is {MAX_QUERY_CHARS}"
        )
    text = normalize_text(query)
    if not text.strip():
        raise InvalidInputError("the query is empty; type some words to search for")
    if not has_words(text):
        if set(text) <= {"\ufffd", " "}:  # bytes that were not text
            raise InvalidInputError("the query is empty once its invalid bytes are dropped")
        raise InvalidInputError(
            f"the query {text[:40]!r} has no letters or digits to search for; type words or numbers"
        )
    return text


def validate_options(mode: str, k: int, offset: int, topic: str | None) -> None:
    """Raise InvalidInputError for a mode, k, offset or topic outside the valid values."""
    if mode not in MODES:
        raise InvalidInputError(f"unknown mode {mode!r}; use one of: {', '.join(MODES)}")
    if not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be between 1 and {MAX_K}, got {k}")
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidInputError(f"offset must be between 0 and {MAX_OFFSET}, got {offset}")
    if topic is not None and topic not in TOPICS:
        raise InvalidInputError(f"unknown topic {topic!r}; use one of: {', '.join(TOPICS)}")


_NON_WORD = re.compile(r"\W+")
_WORD = re.compile(r"\w+")
_EDGES = re.compile(r"^(\W*)(.*?)(\W*)$", re.DOTALL)
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"  # private-use characters


def highlight(text: str, query: str, words: int = SNIPPET_WORDS) -> str:
    """Return an HTML-escaped snippet of `text` with query words wrapped in <mark>.

    Words match accent-insensitively when the query has no diacritics, exactly (ignoring
    case) otherwise. The snippet is the window of `words` words with the most matches.
    """
    exact = has_diacritics(query)
    key = str.lower if exact else fold_accents
    wanted = {key(w) for w in _WORD.findall(query)}
    # The stand-ins for the tags must not come from the text itself.
    tokens = text.replace(_MARK_OPEN, "").replace(_MARK_CLOSE, "").split()
    marks = np.fromiter(
        (not wanted.isdisjoint(_match_keys(token, exact)) for token in tokens),
        dtype=np.int32,
        count=len(tokens),
    )
    # The window of `words` tokens with the most matches; the first one on ties.
    best_start = 0
    if len(tokens) > words:
        best_start = int(np.argmax(np.convolve(marks, np.ones(words, np.int32), "valid")))
    out = []
    for i in range(best_start, min(len(tokens), best_start + words)):
        if marks[i]:
            lead, core, tail = _EDGES.match(tokens[i]).groups()
            out.append(f"{lead}{_MARK_OPEN}{core}{_MARK_CLOSE}{tail}")
        else:
            out.append(tokens[i])
    prefix = "… " if best_start > 0 else ""
    suffix = " …" if best_start + words < len(tokens) else ""
    # Escaped once, with private-use characters standing in for the tags until then.
    snippet = html.escape(" ".join(out))
    return prefix + snippet.replace(_MARK_OPEN, "<mark>").replace(_MARK_CLOSE, "</mark>") + suffix


def _has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


@lru_cache(maxsize=1 << 16)
def _match_keys(token: str, exact: bool) -> frozenset[str]:
    # Cached per word: building the ten snippets of a page was 1-3 ms of every search. A token
    # with punctuation inside ("COVID-19", "1.587") is marked for any of its parts, as the
    # lexical index finds it by them.
    key = str.lower if exact else fold_accents
    parts = [part for part in _NON_WORD.split(token) if part]
    return frozenset(key(part) for part in [*parts, "".join(parts)] if part)


@dataclass
class PassageRecord:
    """A stored passage with its document."""

    passage_id: str
    doc_id: int
    doc: str
    title: str
    section: str
    paragraph: int
    start: int
    end: int
    text: str
    topic: str | None
    topic_scores: dict[str, float] | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> PassageRecord:
        """Build from a row of passages joined with documents (path, title)."""
        scores = json.loads(row["topic_scores"]) if row["topic_scores"] else None
        return cls(
            passage_id=row["passage_id"],
            doc_id=row["doc_id"],
            doc=row["path"],
            title=row["title"],
            section=row["section"],
            paragraph=row["paragraph"],
            start=row["start"],
            end=row["end"],
            text=row["text"],
            topic=row["topic"],
            topic_scores=scores,
        )


@dataclass
class DocumentRecord:
    """An indexed document with its passage and topic counts."""

    id: int
    path: str
    title: str
    passages: int
    topics: dict[str, int]
    sha256: str


_HIT_FIELDS_FROM_RECORD = tuple(
    f.name for f in fields(Hit) if f.name in {g.name for g in fields(PassageRecord)}
)

_PASSAGE_SQL = (
    "SELECT p.id, p.passage_id, p.doc_id, p.paragraph, p.start, p.end, p.section, p.text, "
    "p.topic, p.topic_scores, d.path, d.title FROM passages p JOIN documents d ON d.id = p.doc_id"
)


class Searcher:
    """A loaded index generation plus the embedder that must match it."""

    def __init__(self, root: str | Path, embedder: QueryEmbedder | None) -> None:
        """Open the index at `root`.

        Args:
            root: The index folder.
            embedder: Embeds queries; must match the index's model. None allows only the
                lexical mode (and listing passages).

        Raises:
            IndexError_: No index there, a damaged one, or one built with another model.
        """
        self.root = Path(root)
        self.embedder = embedder
        self.fusion = FusionSettings()
        self._lock = threading.Lock()
        self._load()

    def _load(self) -> None:
        manifest = read_manifest(self.root)
        if manifest is None:
            raise IndexError_(
                f"no index at {self.root}; create one with: vnsearch index PATH... "
                f"--index {self.root}"
            )
        if self.embedder is not None:
            check_model(
                manifest,
                ModelInfo(self.embedder.name, int(self.embedder.dim), self.embedder.fingerprint),
                self.root,
            )
        folder = generation_dir(self.root, manifest.generation)
        try:
            conn = connect(folder / "passages.db", readonly=True)
            dense = load_dense(folder / "dense.faiss")
            lexical = LexicalIndex.load(folder / "lexical")
            restorer = DiacriticRestorer.load(folder / "restore.json")
        except (OSError, RuntimeError, ValueError, sqlite3.Error) as exc:
            raise IndexError_(
                f"the index at {self.root} is damaged ({exc}); rebuild it with: "
                f"vnsearch index PATH... --index {self.root}"
            ) from None
        self.manifest: Manifest = manifest
        self._conn, self._dense, self._lexical, self._restorer = conn, dense, lexical, restorer
        self._first_copy = load_copies(folder / COPIES_FILE, conn)
        self._generation = manifest.generation

    def reload_if_changed(self) -> bool:
        """Switch to a newer generation if a writer published one; True when it did."""
        manifest = read_manifest(self.root)
        if manifest is None or manifest.generation == self._generation:
            return False
        with self._lock:
            if manifest.generation != self._generation:
                old = self._conn
                self._load()
                old.close()
        return True

    # -- queries -------------------------------------------------------------------------

    def _allowed(
        self, topic: str | None, doc: str | None, section: str | None
    ) -> np.ndarray | None:
        if topic is None and doc is None and section is None:
            return None
        sql, args = (
            "SELECT p.id, d.path, d.key, p.section FROM passages p "
            "JOIN documents d ON d.id = p.doc_id",
            [],
        )
        if topic is not None:
            sql += " WHERE p.topic = ?"
            args.append(topic)
        wanted_section = fold_accents(section) if section else None
        ids = []
        for row in self._conn.execute(sql, args):
            if doc is not None and not _doc_matches(row["path"], doc, row["key"]):
                continue
            if wanted_section and wanted_section not in fold_accents(row["section"]):
                continue
            ids.append(row["id"])
        return np.asarray(ids, dtype=np.int64)

    def search(
        self,
        query: str,
        k: int = 10,
        offset: int = 0,
        mode: str = "hybrid",
        topic: str | None = None,
        doc: str | None = None,
        section: str | None = None,
    ) -> SearchResult:
        """Search one query; see `batch_search`."""
        return self.batch_search([query], k, offset, mode, topic, doc, section)[0]

    def batch_search(
        self,
        queries: Sequence[str],
        k: int = 10,
        offset: int = 0,
        mode: str = "hybrid",
        topic: str | None = None,
        doc: str | None = None,
        section: str | None = None,
    ) -> list[SearchResult]:
        """Search many queries with the same options.

        Args:
            queries: Query texts (any Unicode form, with or without diacritics).
            k: Hits per page (1..100).
            offset: Hits to skip (paging).
            mode: "hybrid", "dense" or "lexical".
            topic: Only passages tagged with this topic.
            doc: Only documents whose path (or file name) matches this glob.
            section: Only passages whose section path contains this text (accent-insensitive).

        Returns:
            One SearchResult per query, in order.

        Raises:
            InvalidInputError: A query or option is not acceptable.
        """
        validate_options(mode, k, offset, topic)
        texts = [validate_query(q) for q in queries]
        if mode != "lexical" and self.embedder is None:
            raise InvalidInputError(f"mode {mode!r} needs the embedding model; use --mode lexical")
        with self._lock:
            allowed = self._allowed(topic, doc, section)
            depth = max(self.fusion.depth, offset + k)
            searchable = allowed is None or len(allowed) > 0
            empty = (np.zeros(0, np.float32), np.zeros(0, np.int64))
            lexical_hits = [empty] * len(texts)
            if mode != "dense" and searchable:
                # In the calling thread: 0.2 ms a query at 83,329 passages. A second thread
                # beside the query embedding only fought it for the two cores and the GIL.
                lexical_hits = self._lexical_leg(texts, depth, allowed)
            dense_texts = [q if has_diacritics(q) else self._restorer.restore(q) for q in texts]
            dense_ids: list[np.ndarray] = [np.zeros(0, np.int64)] * len(texts)
            dense_scores: list[np.ndarray] = [np.zeros(0, np.float32)] * len(texts)
            if mode != "lexical" and searchable:
                vectors = self.embedder.embed_queries(dense_texts)
                scores, ids = search_dense(self._dense, vectors, depth, allowed)
                dense_ids = [row[row >= 0] for row in ids]
                dense_scores = [s[row >= 0] for s, row in zip(scores, ids, strict=True)]
            results = []
            for i, text in enumerate(texts):
                lex_scores, lex_ids = lexical_hits[i]
                ranked = self._rank(
                    mode, lex_ids, lex_scores, dense_ids[i], dense_scores[i], _has_letters(text)
                )
                ranked = _without_copies(ranked, self._first_copy)
                page = ranked[offset : offset + k]
                hits = self._hits(page, offset, text)
                results.append(
                    SearchResult(query=queries[i], mode=mode, total=len(ranked), hits=hits)
                )
        return results

    def _lexical_leg(
        self, texts: Sequence[str], depth: int, allowed: np.ndarray | None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self._lexical.search(query_terms(text), depth, allowed) for text in texts]

    def _rank(
        self,
        mode: str,
        lex_ids: np.ndarray,
        lex_scores: np.ndarray,
        dense_ids: np.ndarray,
        dense_scores: np.ndarray,
        letters: bool = True,
    ) -> list[tuple[int, float]]:
        if mode == "lexical":
            return list(zip(lex_ids.tolist(), lex_scores.tolist(), strict=True))
        if mode == "dense":
            return list(zip(dense_ids.tolist(), dense_scores.tolist(), strict=True))
        settings = self.fusion
        weights = [settings.lexical_weight, settings.dense_weight]
        if not letters:
            # "151", "2.345", "01/2022": the vector of a number means nothing, and its nearest
            # passages buried the one exact match (7th of 10); such a query is matched exactly.
            weights = [1.0, 0.0]
        if settings.method == "rrf":
            return reciprocal_rank_fusion([lex_ids, dense_ids], weights, settings.rrf_k)
        return score_fusion([(lex_ids, lex_scores), (dense_ids, dense_scores)], weights)

    def _hits(self, page: list[tuple[int, float]], offset: int, query: str) -> list[Hit]:
        rows = {row["id"]: row for row in self._fetch_records([rowid for rowid, _ in page])}
        hits = []
        for n, (rowid, score) in enumerate(page):
            record = PassageRecord.from_row(rows[rowid])
            shared = {name: getattr(record, name) for name in _HIT_FIELDS_FROM_RECORD}
            hits.append(
                Hit(
                    rank=offset + n + 1,
                    score=round(float(score), 6),
                    highlight=highlight(record.text, query),
                    **shared,
                )
            )
        return hits

    # -- browsing ------------------------------------------------------------------------

    def list_passages(
        self,
        topic: str | None = None,
        doc: str | None = None,
        section: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[int, list[PassageRecord]]:
        """Return (total, page) of passages filtered by topic, document glob and section.

        Passages come in document order. Raises InvalidInputError for bad values.
        """
        validate_options("hybrid", max(1, min(limit, MAX_K)), offset, topic)
        if not 1 <= limit <= MAX_K:
            raise InvalidInputError(f"limit must be between 1 and {MAX_K}, got {limit}")
        with self._lock:
            allowed = self._allowed(topic, doc, section)
            if allowed is None:
                total = self.manifest.passages
                rows = self._conn.execute(
                    f"{_PASSAGE_SQL} ORDER BY p.doc_id, p.paragraph LIMIT ? OFFSET ?",
                    (limit, offset),
                ).fetchall()
            else:
                total = len(allowed)
                page = sorted(allowed.tolist())[offset : offset + limit]
                rows = sorted(
                    self._fetch_records(page), key=lambda r: (r["doc_id"], r["paragraph"])
                )
        return total, [PassageRecord.from_row(row) for row in rows]

    def get_passage(
        self, passage_id: str, context: int = 2
    ) -> tuple[PassageRecord, list[PassageRecord]] | None:
        """Return a passage and up to `context` neighbours on each side (in order), or None."""
        with self._lock:
            row = self._conn.execute(
                f"{_PASSAGE_SQL} WHERE p.passage_id = ?", (passage_id,)
            ).fetchone()
            if row is None:
                return None
            around = self._conn.execute(
                f"{_PASSAGE_SQL} WHERE p.doc_id = ? AND p.paragraph BETWEEN ? AND ? "
                "ORDER BY p.paragraph",
                (row["doc_id"], row["paragraph"] - context, row["paragraph"] + context),
            ).fetchall()
        return PassageRecord.from_row(row), [PassageRecord.from_row(r) for r in around]

    def documents(self, doc: str | None = None) -> list[DocumentRecord]:
        """Return the indexed documents with passage and per-topic counts (facets).

        Args:
            doc: Only documents whose path (or file name) matches this glob, as in `search`.
        """
        with self._lock:
            counts: dict[int, dict[str, int]] = {}
            for row in self._conn.execute(
                "SELECT doc_id, topic, COUNT(*) AS n FROM passages GROUP BY doc_id, topic"
            ):
                if row["topic"]:
                    counts.setdefault(row["doc_id"], {})[row["topic"]] = row["n"]
            rows = [
                row
                for row in self._conn.execute(
                    "SELECT id, key, path, title, n_passages, sha256 FROM documents ORDER BY path"
                )
                if doc is None or _doc_matches(row["path"], doc, row["key"])
            ]
        return [
            DocumentRecord(
                r["id"],
                r["path"],
                r["title"],
                r["n_passages"],
                counts.get(r["id"], {}),
                r["sha256"],
            )
            for r in rows
        ]

    def topic_counts(self) -> dict[str, int]:
        """Return how many passages carry each topic across the index."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT topic, COUNT(*) AS n FROM passages WHERE topic IS NOT NULL GROUP BY topic"
            ).fetchall()
        return {row["topic"]: row["n"] for row in rows}

    def stats(self) -> dict:
        """Return counts, model and on-disk size of the current generation."""
        folder = generation_dir(self.root, self.manifest.generation)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        return {
            "documents": self.manifest.documents,
            "passages": self.manifest.passages,
            "generation": self.manifest.generation,
            "model": vars(self.manifest.model),
            "dense_kind": self.manifest.dense_kind,
            "index_bytes": size,
            "topics": self.topic_counts(),
        }

    def find_passages(self, doc_suffix: str, contains: str) -> list[str]:
        """Return the texts of passages of documents whose path ends with `doc_suffix` and
        whose text contains `contains` (normalised); used to resolve judged answers."""
        rows = self._conn.execute(
            "SELECT p.text FROM passages p JOIN documents d ON d.id = p.doc_id "
            "WHERE (d.key = ? OR d.key LIKE ?) AND instr(p.text, ?) > 0",
            (doc_suffix, "%/" + doc_suffix, normalize_text(contains)),
        )
        return [row["text"] for row in rows]

    def _fetch_records(self, rowids: Sequence[int]) -> list[sqlite3.Row]:
        if not rowids:
            return []
        marks = ",".join("?" * len(rowids))
        return self._conn.execute(
            f"{_PASSAGE_SQL} WHERE p.id IN ({marks})", list(rowids)
        ).fetchall()


def _without_copies(
    ranked: list[tuple[int, float]], first_copy: dict[int, int]
) -> list[tuple[int, float]]:
    """Keep only the best-ranked of passages with identical text: a reader gains nothing from
    the same paragraph twice, and copies would push other documents off the page."""
    if not first_copy:
        return ranked
    seen: set[int] = set()
    kept = []
    for rowid, score in ranked:
        key = first_copy.get(rowid, rowid)
        if key not in seen:
            seen.add(key)
            kept.append((rowid, score))
    return kept


def _doc_matches(path: str, pattern: str, key: str = "") -> bool:
    # `path` is shown as given when indexing (often relative), `key` is the absolute path: a
    # pattern starting with "/" is matched against that.
    name = path.rsplit("/", 1)[-1]
    target = key if pattern.startswith("/") and key else path
    return (
        fnmatch.fnmatchcase(target, pattern)
        or fnmatch.fnmatchcase(name, pattern)
        or (not any(ch in pattern for ch in "*?[") and pattern in target)
    )
