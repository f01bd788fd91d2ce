"""Unicode, tone-mark and whitespace normalisation, plus the accent-folded matching key."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Invisible characters that break matching but carry no meaning in running text.
_INVISIBLE: dict[int, str | None] = dict.fromkeys(
    map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None
)
# Look-alikes that real Vietnamese files use for Đ/đ (the Icelandic eth, from legacy fonts).
_INVISIBLE.update({0x00D0: "Đ", 0x00F0: "đ"})
# C0/C1 control characters other than newline and tab.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")

# One tone-mark placement convention: the "new" style (hoà, khoẻ, thuỷ), which puts the mark on
# the second vowel of oa/oe/uy at the end of a syllable. It is the only choice that never
# damages "qu" syllables (quý stays quý), so it is safe to apply to any text.
_TONED = {
    "a": "àáảãạ",
    "e": "èéẻẽẹ",
    "y": "ỳýỷỹỵ",
}
_PLAIN_TONE = {"o": "òóỏõọ", "u": "ùúủũụ"}


def _tone_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for first, second in (("o", "a"), ("o", "e"), ("u", "y")):
        for tone in range(5):
            old = _PLAIN_TONE[first][tone] + second
            new = first + _TONED[second][tone]
            table[old] = new
            table[old.capitalize()] = new.capitalize()
            table[old.upper()] = new.upper()
    return table


_TONE_MAP = _tone_table()
_TONE_RE = re.compile("(" + "|".join(sorted(_TONE_MAP, key=len, reverse=True)) + r")(?![^\W\d_])")


def normalize_text(text: str, *, keep_newlines: bool = False) -> str:
    """Return NFC text with one tone-mark convention and clean whitespace.

    Args:
        text: Any Unicode text (NFD, mixed tone-mark styles, zero-width characters ...).
        keep_newlines: Keep line breaks (for whole documents); otherwise fold them into spaces.

    Returns:
        The normalised text; stripped, with runs of spaces collapsed.
    """
    text = unicodedata.normalize("NFC", text).translate(_INVISIBLE)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub(" ", text)
    text = _TONE_RE.sub(lambda m: _TONE_MAP[m.group(1)], text)
    if keep_newlines:
        lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
        return "\n".join(lines).strip()
    return _SPACES.sub(" ", text.replace("\n", " ")).strip()


@lru_cache(maxsize=1 << 16)
def fold_accents(text: str) -> str:
    """Return the accent-folded, lower-cased matching key of `text`.

    `kỷ luật đảng viên` becomes `ky luat dang vien`; `đ`/`Đ` become `d`.

    Args:
        text: Any text; it need not be normalised first.

    Returns:
        Lower-case text without combining marks.
    """
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", stripped).lower()


def has_words(text: str) -> bool:
    """Return True when `text` has a letter or digit: something to search for or classify."""
    return any(ch.isalnum() for ch in text)


def has_diacritics(text: str) -> bool:
    """Return True when `text` carries any Vietnamese diacritic (so it is not accent-folded)."""
    return fold_accents(text) != text.lower()
