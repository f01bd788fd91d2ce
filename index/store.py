"""The index folder: generations of plain files behind a manifest that is written last.

Layout of `DIR`:

    manifest.json        format version, model, counts and the current generation (os.replace'd)
    gen-000007/          one complete generation
        passages.db      SQLite: documents, passages (text, tokens, topic, vector)
        dense.faiss      FAISS index over the passage vectors (ids = passage row ids)
        lexical/         bm25s arrays (.npy + JSON) over the lexical terms
        rowids.npy       lexical position -> passage row id
        restore.json     accent-folded word -> most frequent accented form, for queries
    .lock                held by the one writer

A writer copies the current generation's database into a new temporary folder, applies its
changes there, builds the dense and lexical indexes, renames the folder and only then replaces
the manifest. A crash at any moment leaves the previous generation and manifest untouched.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nlp.errors import IndexError_

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KEEP_GENERATIONS = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    key TEXT UNIQUE NOT NULL,
    path TEXT NOT NULL,
    title TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    n_passages INTEGER NOT NULL,
    indexed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY,
    passage_id TEXT UNIQUE NOT NULL,
    doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    paragraph INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    section TEXT NOT NULL,
    text TEXT NOT NULL,
    tokens TEXT NOT NULL,
    topic TEXT,
    topic_scores TEXT,
    vector BLOB NOT NULL
);
-- Each distinct innermost heading of the passages, segmented once: its words are lexical
-- terms of the passages under it (index.indexer._finish_generation).
CREATE TABLE IF NOT EXISTS headings (
    heading TEXT PRIMARY KEY,
    tokens TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_doc ON passages(doc_id, paragraph);
CREATE INDEX IF NOT EXISTS passages_topic ON passages(topic);
"""


@dataclass(frozen=True)
class ModelInfo:
    """The embedding model an index was built with."""

    name: str
    dim: int
    fingerprint: str


@dataclass
class Manifest:
    """What `manifest.json` records about an index."""

    generation: int
    model: ModelInfo
    documents: int = 0
    passages: int = 0
    dense_kind: str = "flat"
    created_at: float = field(default_factory=time.time)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict:
        """Return the manifest as a JSON-ready dict."""
        return {
            "format_version": self.format_version,
            "generation": self.generation,
            "model": vars(self.model),
            "documents": self.documents,
            "passages": self.passages,
            "dense_kind": self.dense_kind,
            "created_at": self.created_at,
        }


def generation_dir(root: Path, generation: int) -> Path:
    """Return the folder of one generation."""
    return root / f"gen-{generation:06d}"


def read_manifest(root: str | os.PathLike[str]) -> Manifest | None:
    """Read `DIR/manifest.json`; None when the folder holds no index yet.

    Raises:
        IndexError_: `root` is a file, or the manifest is unreadable or of an unknown format
            version.
    """
    _refuse_a_file(Path(root))
    path = Path(root) / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        manifest = Manifest(
            generation=int(data["generation"]),
            model=ModelInfo(**data["model"]),
            documents=int(data["documents"]),
            passages=int(data["passages"]),
            dense_kind=str(data.get("dense_kind", "flat")),
            created_at=float(data["created_at"]),
            format_version=int(data["format_version"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexError_(
            f"{path} is damaged ({exc}); rebuild with: vnsearch index PATH... --index {root}"
        ) from None
    if manifest.format_version != FORMAT_VERSION:
        raise IndexError_(
            f"{root} has index format {manifest.format_version}, this vnsearch reads "
            f"{FORMAT_VERSION}; rebuild it with: vnsearch index PATH... --index NEW_DIR"
        )
    return manifest


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Atomically replace `DIR/manifest.json` (write a temporary sibling, fsync, rename)."""
    tmp = root / f".{MANIFEST}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(manifest.to_json(), handle, ensure_ascii=False, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, root / MANIFEST)
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_model(manifest: Manifest, model: ModelInfo, root: str | os.PathLike[str]) -> None:
    """Refuse an embedding model that differs from the one the index was built with.

    Raises:
        IndexError_: Names both models and how to rebuild.
    """
    built = manifest.model
    if (built.name, built.dim, built.fingerprint) != (model.name, model.dim, model.fingerprint):
        raise IndexError_(
            f"the index at {root} was built with model {built.name} (dim {built.dim}, "
            f"fingerprint {built.fingerprint}) but model {model.name} (dim {model.dim}, "
            f"fingerprint {model.fingerprint}) was given; use --model {built.name}, or rebuild "
            f"into a new folder: vnsearch index PATH... --index NEW_DIR --model {model.name}"
        )


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open a passages database (read-only connections may be shared across threads)."""
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA foreign_keys = ON")
        conn.executescript(SCHEMA)
    conn.row_factory = sqlite3.Row
    return conn


@contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    """Hold the index's writer lock; a second writer fails at once with a clear message.

    Raises:
        IndexError_: `root` is a file, or a folder holding files of something other than an
            index (a writer must not put its folders among a user's documents).
    """
    _check_index_folder(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexError_(
                f"another vnsearch process is writing {root}; wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _refuse_a_file(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise IndexError_(
            f"{root} is a file, not an index folder; pass --index with an index folder, or "
            "a new folder name to create one"
        )


def _check_index_folder(root: Path) -> None:
    _refuse_a_file(root)
    if root.is_dir() and not (root / MANIFEST).exists():
        # Only what a writer leaves before its first manifest: the lock and generation folders.
        foreign = sorted(
            entry.name
            for entry in root.iterdir()
            if entry.name != ".lock" and not entry.name.startswith("gen-")
        )
        if foreign:
            raise IndexError_(
                f"{root} is not a vnsearch index (it holds {', '.join(foreign[:3])}"
                f"{' ...' if len(foreign) > 3 else ''}); pass --index with a new or empty folder"
            )


def new_generation(root: Path, manifest: Manifest | None) -> tuple[int, Path]:
    """Start a new generation folder holding a copy of the current database.

    Leftovers of crashed writers (`*.tmp` folders) are removed first.

    Returns:
        The new generation number and its temporary folder.
    """
    for stale in root.glob("gen-*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    number = (manifest.generation + 1) if manifest else 1
    tmp = root / f"gen-{number:06d}.tmp"
    tmp.mkdir(parents=True)
    if manifest is not None:
        source = sqlite3.connect(generation_dir(root, manifest.generation) / "passages.db")
        target = sqlite3.connect(tmp / "passages.db")
        with target:
            source.backup(target)
        source.close()
        target.close()
    return number, tmp


def publish_generation(root: Path, tmp: Path, manifest: Manifest) -> None:
    """Make a finished generation current: rename its folder, then replace the manifest."""
    for path in tmp.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    final = generation_dir(root, manifest.generation)
    if final.exists():  # left by a crash between rename and manifest: never current, safe to drop
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    write_manifest(root, manifest)
    generations = sorted(root.glob("gen-[0-9]*[0-9]"))
    for old in generations[:-KEEP_GENERATIONS]:
        shutil.rmtree(old, ignore_errors=True)


# Passages whose exact text occurs more than once, each with the first row holding that text.
COPIES_FILE = "copies.npy"


def first_copies(conn: sqlite3.Connection) -> dict[int, int]:
    """Map each passage whose exact text occurs more than once (a regulation quoted in several
    articles) to the first row holding that text."""
    first: dict[int, int] = {}
    by_text: dict[str, int] = {}
    rows = conn.execute(
        "SELECT id, text FROM passages WHERE text IN "
        "(SELECT text FROM passages GROUP BY text HAVING COUNT(*) > 1) ORDER BY id"
    )
    for rowid, text in rows:
        first[rowid] = by_text.setdefault(text, rowid)
    return first


def save_copies(path: Path, copies: dict[int, int]) -> None:
    """Write `first_copies` as an int64 array of (row, first row) pairs."""
    pairs = np.array(sorted(copies.items()), dtype=np.int64).reshape(-1, 2)
    np.save(path, pairs, allow_pickle=False)


def load_copies(path: Path, conn: sqlite3.Connection) -> dict[int, int]:
    """Read what `save_copies` wrote; a generation written before it existed is asked in SQL
    (0.3 s at 83,000 passages, the reason it is now written at index time)."""
    if not path.exists():
        return first_copies(conn)
    pairs = np.load(path, allow_pickle=False)
    return dict(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist(), strict=True))
