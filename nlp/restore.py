"""Restoring diacritics to text typed without them, from a vocabulary learned from passages.

The index learns one from its passages for queries (`ky luat dang vien`), and a topic model
one from its training paragraphs for texts given to `classify` without diacritics.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from nlp.normalize import fold_accents

MAX_WORD_SYLLABLES = 4
_WORD_OR_GAP = re.compile(r"[^\W_]+|[\W_]+")  # "_" is a gap: the table's words use it


class DiacriticRestorer:
    """Maps accent-folded words to their most frequent accented form in the indexed passages.

    `ky luat dang vien` becomes `kỷ luật đảng viên`: the longest known folded word is taken at
    each position, so the pair `dang_vien` decides between `đảng` and `đang`.
    """

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]]) -> DiacriticRestorer:
        """Learn the table from segmented passages (tokens like `kỷ_luật`)."""
        occurrences: Counter[str] = Counter()
        for tokens in token_lists:
            occurrences.update(tokens)
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for token, n in occurrences.items():  # each distinct token once
            word = token.lower()
            if any(ch.isalpha() for ch in word):
                counts[fold_accents(word)][word] += n
        return cls({folded: forms.most_common(1)[0][0] for folded, forms in counts.items()})

    def save(self, path: Path) -> None:
        """Write the table as JSON."""
        path.write_text(json.dumps(self.table, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> DiacriticRestorer:
        """Read a table written by `save`; an absent file gives an empty table."""
        if not path.exists():
            return cls({})
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def restore(self, query: str) -> str:
        """Return `query` with diacritics restored where the vocabulary knows the words."""
        syllables = query.split()
        out: list[str] = []
        i = 0
        while i < len(syllables):
            for n in range(min(MAX_WORD_SYLLABLES, len(syllables) - i), 0, -1):
                key = "_".join(syllables[i : i + n]).lower()
                if key in self.table:
                    out.append(self.table[key].replace("_", " "))
                    i += n
                    break
            else:
                out.append(syllables[i])
                i += 1
        return " ".join(out)

    def restore_text(self, text: str) -> str:
        """Return a paragraph with diacritics restored, its punctuation, spacing and initial
        capitals kept: each run of words joined by single spaces (or "_", as in `kỷ_luật`) is
        restored as a query."""
        out: list[str] = []
        run: list[str] = []
        joints: list[str] = []  # between the words of the run

        def flush() -> None:
            restored = self.restore(" ".join(run)).split(" ") if run else []
            for n, (original, word) in enumerate(zip(run, restored, strict=True)):
                out.append(joints[n - 1] if n else "")
                out.append(word[:1].upper() + word[1:] if original[:1].isupper() else word)
            run.clear()
            joints.clear()

        for piece in _WORD_OR_GAP.findall(text):
            if piece[0].isalnum():
                run.append(piece)
            elif piece in (" ", "_") and run:
                joints.append(piece)
            else:
                if len(joints) == len(run) and run:  # a joint that ended up closing the run
                    piece = joints.pop() + piece
                flush()
                out.append(piece)
        trailing = joints.pop() if run and len(joints) == len(run) else ""
        flush()
        return "".join(out) + trailing
