"""Split a document into passages with their section path, joining broken paragraphs.

A line is a heading, a content line, or noise (table rules, signature blocks). Headings are kept
as section metadata, never as passages. A line that starts in lower case after a content line
that does not end a sentence continues that paragraph (page and line breaks in real reports).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nlp.reader import RawDocument

SECTION_SEPARATOR = " > "
MAX_HEADING_CHARS = 160
MIN_PASSAGE_WORDS = 5
# A "paragraph" longer than this (a file without line breaks, a page dump) is cut at sentence
# ends into passages of about this size, so that each stays searchable and embeddable.
MAX_PASSAGE_CHARS = 3000
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…;])\s+")

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_ROMAN = re.compile(r"^[IVXL]{1,5}\.\s+\S")
_CHAPTER = re.compile(r"^(Chương|Phần)\s+([IVXLC]+|\d+)\b", re.IGNORECASE)
_SUBCHAPTER = re.compile(r"^Mục\s+\d+\b")
_ARTICLE = re.compile(r"^Điều\s+\d+[a-z]?\.")
_ARABIC = re.compile(r"^(\d{1,2}(?:\.\d{1,2})*)\.?\s+\S")
_LETTER = re.compile(r"^[a-zđ]\)\s+\S")
_TRAILER = re.compile(r"^(\*\*)?\s*Nơi nhận\s*:?", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?:;…\"”'»)\]]$")
_MD_EDIT = re.compile(r"\[\s*sửa\s*\|\s*sửa mã nguồn\s*\]", re.IGNORECASE)
_MD_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_MD_FOOTNOTE = re.compile(r"\[\d+\]|\[cần dẫn nguồn\]")
_MD_EMPHASIS = re.compile(r"(\*\*|__|\*|`)")
# A markdown line that is bold and nothing else: web articles use it as a sub-heading
# ("**Thẩm quyền thi hành kỷ luật đảng viên vi phạm được quy định ra sao?**").
_MD_BOLD_LINE = re.compile(r"^\s*(\*\*|__)[^*_].*(\*\*|__)\s*[:?]?\s*$")
BOLD_HEADING_RANK = 7  # under markdown's # levels, above numbered parts
_TABLE_RULE = re.compile(r"^\|?[\s:|-]+\|?$")
_RULE = re.compile(r"^[-=_*·.]{3,}$")
# The line naming what a document is: a title's first words in official documents.
_DOCUMENT_TYPE = re.compile(
    r"^(BỘ LUẬT|LUẬT|HIẾN PHÁP|PHÁP LỆNH|NGHỊ QUYẾT|NGHỊ ĐỊNH|QUYẾT ĐỊNH|QUY ĐỊNH|QUY CHẾ|"
    r"CHỈ THỊ|THÔNG TƯ|THÔNG BÁO|KẾT LUẬN|HƯỚNG DẪN|BÁO CÁO|KẾ HOẠCH|CHƯƠNG TRÌNH|ĐỀ ÁN|"
    r"ĐIỀU LỆ|TỜ TRÌNH|CÔNG VĂN|CÔNG ĐIỆN|DIỄN VĂN|BÀI PHÁT BIỂU)\b"
)
# Banner lines above a title: the issuer over a rule, the national motto, the number.
_BANNER = re.compile(
    r"^(CỘNG HÒA XÃ HỘI CHỦ NGHĨA|CỘNG HOÀ XÃ HỘI CHỦ NGHĨA|ĐẢNG CỘNG SẢN VIỆT NAM|"
    r"Độc lập|ĐỘC LẬP|Số\s*:|SỐ\s*:)"
)
_RULE_END = re.compile(r"[-=_*]{3,}\s*$")


@dataclass(frozen=True)
class Passage:
    """One paragraph of a document, traceable to its place in the file."""

    doc: str
    title: str
    paragraph: int
    start: int
    end: int
    section: str
    text: str


@dataclass(frozen=True)
class _Line:
    text: str
    start: int
    end: int
    bold: bool = False


def _clean_markup(line: str) -> str:
    line = _MD_EDIT.sub("", line)
    line = _MD_IMAGE.sub("", line)
    line = _MD_LINK.sub(r"\1", line)
    line = _MD_FOOTNOTE.sub("", line)
    line = _MD_EMPHASIS.sub("", line)
    if line.startswith("|"):
        if _TABLE_RULE.match(line):
            return ""
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        line = "; ".join(cell for cell in cells if cell)
    if line.startswith(">"):
        line = line.lstrip("> ")
    return re.sub(r"\s+", " ", line).strip()


def _is_upper(text: str) -> bool:
    letters = [ch for ch in text if ch.isalpha()]
    return len(letters) >= 2 and all(ch.isupper() for ch in letters)


def _heading_rank(line: str) -> int | None:
    """Return the nesting rank of a heading line (smaller is outer), or None for content.

    Numbered lines are headings only when short and not ending a sentence: in real reports
    "1. Chỉ đạo sơ, tổng kết ..." opens a long content paragraph.
    """
    if (match := _MD_HEADING.match(line)) is not None:
        return len(match.group(1))
    short = len(line) <= MAX_HEADING_CHARS and not re.search(r"[.;,]$", line)
    if _CHAPTER.match(line) and len(line) <= MAX_HEADING_CHARS:
        return 10
    if _ROMAN.match(line) and short:
        return 11
    if _SUBCHAPTER.match(line) and short:
        return 12
    if _ARTICLE.match(line) and len(line) <= MAX_HEADING_CHARS:
        return 13
    if (match := _ARABIC.match(line)) is not None and short:
        return 14 + match.group(1).count(".")
    if _LETTER.match(line) and short:
        return 20
    if _is_upper(line) and len(line) <= MAX_HEADING_CHARS:
        return 0  # unnumbered capitals: document banners and titles, not sections
    return None


def _is_short_heading(text: str) -> bool:
    return len(text) <= MAX_HEADING_CHARS and not re.search(r"[.;,]$", text)


def _is_lead_in(block: tuple[int | None, str, int, int]) -> bool:
    """A short content line that announces a list ("... như sau:"): it joins the next line,
    so that it is never a passage of its own that matches a query on its few words."""
    rank, text, _, _ = block
    return rank is None and len(text) <= MAX_HEADING_CHARS and text.endswith(":")


def _lines(text: str) -> list[_Line]:
    lines, offset = [], 0
    for raw in text.split("\n"):
        cleaned = _clean_markup(raw)
        if cleaned and not _RULE.match(cleaned):
            bold = _MD_BOLD_LINE.match(raw) is not None
            lines.append(_Line(cleaned, offset, offset + len(raw), bold))
        offset += len(raw) + 1
    return lines


def innermost_heading(section: str) -> str:
    """The last heading of a section path, without trailing punctuation ("" for none)."""
    return section.rsplit(SECTION_SEPARATOR, 1)[-1].strip().rstrip(".:; ") if section else ""


def split_passages(document: RawDocument) -> list[Passage]:
    """Split a document into content passages with section paths.

    Args:
        document: A document read by `nlp.reader`.

    Returns:
        Passages in reading order, numbered from 1, with character offsets into
        `document.text`. Headings, banners, recipient lists and signature blocks are left out.
    """
    blocks: list[tuple[int | None, str, int, int]] = []  # (rank, text, start, end)
    for line in _lines(document.text):
        if _TRAILER.match(line.text):
            break  # "Nơi nhận:" opens the recipient list and signature block
        rank = _heading_rank(line.text)
        if rank is None and line.bold and _is_short_heading(line.text):
            rank = BOLD_HEADING_RANK
        if blocks and line.text[0].islower():
            prev_rank, prev_text, prev_start, _ = blocks[-1]
            if (prev_rank is None and not _SENTENCE_END.search(prev_text)) or prev_rank == 0:
                blocks[-1] = (prev_rank, f"{prev_text} {line.text}", prev_start, line.end)
                continue
        if rank is not None and blocks and blocks[-1][0] == rank == 0:
            prev = blocks[-1]
            blocks[-1] = (0, f"{prev[1]} {line.text}", prev[2], line.end)
            continue
        if rank == 0 and blocks and blocks[-1][0] in (10, 12) and _is_upper(line.text):
            prev = blocks[-1]  # "Chương I" + "NHỮNG QUY ĐỊNH CHUNG"
            blocks[-1] = (prev[0], f"{prev[1]}. {line.text}", prev[2], line.end)
            continue
        if rank is None and blocks and _is_lead_in(blocks[-1]):
            prev = blocks[-1]  # "Thẩm quyền thi hành kỷ luật đảng viên vi phạm:" + "1. Chi bộ ..."
            blocks[-1] = (None, f"{prev[1]} {line.text}", prev[2], line.end)
            continue
        blocks.append((rank, line.text, line.start, line.end))

    title = document.title or _guess_title(document, blocks)
    stack: list[tuple[int, str]] = []
    passages: list[Passage] = []
    for rank, text, start, end in blocks:
        if rank is not None:
            if rank > 0:
                stack = [(r, t) for r, t in stack if r < rank] + [(rank, _strip_md(text))]
            continue
        if len(text.split()) < MIN_PASSAGE_WORDS and not _SENTENCE_END.search(text):
            continue  # a bare label, a name under a signature, a stray table cell
        if not any(ch.isalpha() for ch in text):
            continue  # "1.", '... ".', a table row of figures: no words to find or read
        for offset, piece in _cut_long(text):
            passages.append(
                Passage(
                    doc=document.path,
                    title=title,
                    paragraph=len(passages) + 1,
                    start=min(start + offset, end),
                    end=min(start + offset + len(piece), end),
                    section=SECTION_SEPARATOR.join(t for _, t in stack),
                    text=piece,
                )
            )
    return passages


def _cut_long(text: str, limit: int = MAX_PASSAGE_CHARS) -> list[tuple[int, str]]:
    """Cut `text` into (offset, piece) runs of whole sentences of at most about `limit` chars.

    A sentence longer than `limit` is cut at a space.
    """
    if len(text) <= limit:
        return [(0, text)]
    pieces: list[tuple[int, str]] = []
    start = 0
    while start < len(text):
        if len(text) - start <= limit:
            end = len(text)
        else:
            window = text[start : start + limit]
            breaks = [m.end() for m in _SENTENCE_BREAK.finditer(window)]
            end = start + (breaks[-1] if breaks else (window.rfind(" ") + 1 or limit))
        piece = text[start:end].strip()
        if piece:
            pieces.append((start, piece))
        start = end
    return pieces


def _strip_md(text: str) -> str:
    return _MD_HEADING.sub(r"\2", text).strip()


def _guess_title(document: RawDocument, blocks: list[tuple[int | None, str, int, int]]) -> str:
    """The title of a document that names none: its type line ("LUẬT" + "BÁO CHÍ", "NGHỊ
    ĐỊNH" + what it rules on), else its first capitals or top heading that is not a banner
    ("QUỐC HỘI ------", the national motto, "Số: ..."), else a short first line, else the file
    name."""
    first = blocks[:20]
    for n, (rank, text, _, _) in enumerate(first):
        if rank in (0, 1) and _DOCUMENT_TYPE.match(_strip_md(text)):
            title = _strip_md(text)
            following = first[n + 1] if n + 1 < len(first) else None
            if (
                _DOCUMENT_TYPE.fullmatch(title)
                and following is not None
                and following[0] in (None, BOLD_HEADING_RANK)
                and len(following[1]) <= MAX_HEADING_CHARS
            ):
                title = f"{title} {_strip_md(following[1])}"  # "NGHỊ ĐỊNH" + "Quy định ..."
            return title
    for rank, text, _, _ in first:
        if rank in (0, 1) and not _is_banner(_strip_md(text)):
            return _strip_md(text)
    if first and first[0][0] is None:
        line = _strip_md(first[0][1])
        if len(line) <= MAX_HEADING_CHARS and not re.search(r"[.;,:]$", line):
            return line
    return document.path.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _is_banner(text: str) -> bool:
    return bool(_BANNER.match(text) or _RULE_END.search(text)) or not any(
        ch.isalnum() for ch in text
    )
