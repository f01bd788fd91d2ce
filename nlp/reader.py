"""Read .txt, .md, .docx and .pdf files into normalised text, one file or a folder tree."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nlp.errors import DocumentReadError
from nlp.normalize import normalize_text

SUPPORTED_SUFFIXES = (".txt", ".md", ".docx", ".pdf")
MAX_FILE_BYTES = 64 * 1024 * 1024
# Plain text is all paragraphs: 8 MiB is about 20 times the largest corpus file and already
# hours of CPU indexing. VNSEARCH_MAX_TEXT_MB raises it for a user who means it.
DEFAULT_MAX_TEXT_MB = 8
MANIFEST_NAME = "MANIFEST.jsonl"


@dataclass(frozen=True)
class RawDocument:
    """A document's normalised text (line breaks kept) and where it came from."""

    path: str
    text: str
    title: str | None = None


@dataclass(frozen=True)
class ReadFailure:
    """A file that was skipped, with the reason a user can act on."""

    path: str
    error: str


def _decode(path: str, data: bytes) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 with a byte-order mark (Windows editors)
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise DocumentReadError(path, "damaged UTF-16 text; re-save it as UTF-8") from None
    if b"\x00" in data[:8192]:
        raise DocumentReadError(path, "binary file (NUL bytes); only text, .docx and .pdf are read")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentReadError(
            path, f"not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8"
        ) from None


def _read_docx(path: str) -> tuple[str, str | None]:
    import docx  # lazy: python-docx is only needed for .docx files
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(path)
    except (PackageNotFoundError, KeyError, ValueError, OSError) as exc:
        raise DocumentReadError(path, f"not a readable .docx file ({exc})") from None
    except Exception as exc:  # zipfile.BadZipFile, lxml errors on truncated files
        raise DocumentReadError(path, f"damaged .docx file ({type(exc).__name__})") from None
    lines = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            lines.append(" | ".join(cell.text for cell in row.cells))
    title = document.core_properties.title or None
    return "\n\n".join(lines), title


def _read_pdf(path: str) -> tuple[str, str | None]:
    import logging

    import pypdf  # lazy

    # pypdf logs what it repairs ("EOF marker not found") on stderr; a file it cannot read
    # raises, and is reported with the reason like any other.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
        title = (reader.metadata.title if reader.metadata else None) or None
    except Exception as exc:  # pypdf raises many types on damaged files
        raise DocumentReadError(path, f"damaged or encrypted .pdf file ({exc})") from None
    return "\n".join(pages), title


def read_document(path: str | os.PathLike[str], title: str | None = None) -> RawDocument:
    """Read one file into a `RawDocument` with normalised text.

    Args:
        path: A .txt, .md, .docx or .pdf file.
        title: A title to use instead of one found in the file.

    Returns:
        The document, its text normalised with line breaks kept.

    Raises:
        DocumentReadError: The file is missing, unsupported, empty, binary, too large,
            undecodable or damaged; the message names the reason.
    """
    name = str(path)
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DocumentReadError(
            name, f"unsupported file type {suffix or '(none)'}; use {', '.join(SUPPORTED_SUFFIXES)}"
        )
    try:
        size = os.path.getsize(name)
    except OSError as exc:
        raise DocumentReadError(name, f"cannot open ({exc.strerror})") from None
    if size == 0:
        raise DocumentReadError(name, "empty file")
    if size > MAX_FILE_BYTES:
        raise DocumentReadError(
            name, f"file is {size // 2**20} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB"
        )
    text_limit = _max_text_bytes()
    if suffix in (".txt", ".md") and size > text_limit:
        raise DocumentReadError(
            name,
            f"text file is {size / 2**20:.0f} MiB; the limit for {suffix} is "
            f"{text_limit // 2**20} MiB: split it into smaller files "
            "or set VNSEARCH_MAX_TEXT_MB",
        )
    found_title = None
    if suffix == ".docx":
        text, found_title = _read_docx(name)
    elif suffix == ".pdf":
        text, found_title = _read_pdf(name)
    else:
        try:
            data = Path(name).read_bytes()
        except OSError as exc:
            raise DocumentReadError(name, f"cannot open ({exc.strerror})") from None
        text = _decode(name, data)
    text = normalize_text(text, keep_newlines=True)
    if not text:
        raise DocumentReadError(name, "no text in file")
    title = normalize_text(title or found_title or "") or None
    return RawDocument(path=name, text=text, title=title)


def _max_text_bytes() -> int:
    """The .txt/.md size limit in bytes, from VNSEARCH_MAX_TEXT_MB when it is set."""
    raw = os.environ.get("VNSEARCH_MAX_TEXT_MB", "")
    try:
        megabytes = float(raw) if raw.strip() else DEFAULT_MAX_TEXT_MB
    except ValueError:
        megabytes = DEFAULT_MAX_TEXT_MB
    return int(max(megabytes, 0) * 2**20)


def iter_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[str]:
    """Yield the files named by `paths`, walking folders recursively in sorted order.

    Hidden files, the corpus manifest and files of unsupported types found inside folders are
    passed over; a file named directly is always yielded so that its problem gets reported.
    Symbolic links to folders are not followed, so link loops cannot recurse.
    """
    for path in paths:
        name = str(path)
        if os.path.isdir(name):
            for root, dirs, files in os.walk(name, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for file in sorted(files):
                    if file.startswith(".") or file == MANIFEST_NAME:
                        continue
                    full = os.path.join(root, file)
                    if Path(file).suffix.lower() in SUPPORTED_SUFFIXES or os.path.islink(full):
                        yield full
        else:
            yield name


class ManifestTitles:
    """Titles from `MANIFEST.jsonl` files (lines with `file` and `title`) beside or above files."""

    def __init__(self) -> None:
        self._cache: dict[str, dict[str, str]] = {}

    def _load(self, folder: str) -> dict[str, str]:
        if folder not in self._cache:
            titles: dict[str, str] = {}
            manifest = os.path.join(folder, MANIFEST_NAME)
            if os.path.isfile(manifest):
                with open(manifest, encoding="utf-8") as handle:
                    for line in handle:
                        try:
                            row = json.loads(line)
                            titles[os.path.normpath(row["file"])] = str(row["title"])
                        except (ValueError, KeyError, TypeError):
                            continue
            self._cache[folder] = titles
        return self._cache[folder]

    def title_for(self, path: str, levels: int = 3) -> str | None:
        """Return the manifest title of `path`, looking up to `levels` folders above it."""
        folder = os.path.dirname(os.path.abspath(path))
        for _ in range(levels):
            titles = self._load(folder)
            if titles:
                relative = os.path.normpath(os.path.relpath(os.path.abspath(path), folder))
                return titles.get(relative)
            parent = os.path.dirname(folder)
            if parent == folder:
                break
            folder = parent
        return None


def read_paths(
    paths: Iterable[str | os.PathLike[str]],
) -> Iterator[RawDocument | ReadFailure]:
    """Read every file under `paths`, yielding documents and failures in order.

    A file that cannot be read is yielded as a `ReadFailure`; the batch goes on.
    """
    titles = ManifestTitles()
    for name in iter_files(paths):
        try:
            yield read_document(name, title=titles.title_for(name))
        except DocumentReadError as exc:
            yield ReadFailure(path=name, error=exc.reason)
