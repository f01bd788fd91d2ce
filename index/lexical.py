"""Lexical retrieval: BM25 (bm25s) over segmented words and their accent-folded forms."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")

# BM25 saturation and length normalisation. bm25s's defaults (1.5, 0.75) let one-line list
# items and headings outrank the paragraphs that answer a query; on each half of the search
# evaluation set b = 0.3 raised lexical nDCG@10 (0.336 -> 0.423 and 0.381 -> 0.392, see
# eval/RESULTS.md).
BM25_K1 = 1.2
BM25_B = 0.3
# The one term of a passage that has none (bm25s needs at least one per passage).
NO_TERMS = "\u2205"


# Beside the bm25s arrays: the version of the analysis that made the terms
# (`nlp.segment.LEXICAL_ANALYSIS`); a folder without it was made by version 1.
ANALYSIS_FILE = "analysis.json"


class LexicalIndex:
    """BM25 over lexical terms; positions map to passage row ids through `rowids`."""

    def __init__(self, retriever, rowids: np.ndarray, analysis: int = 1) -> None:  # noqa: ANN001
        self._retriever = retriever
        self.rowids = rowids
        self.analysis = analysis
        self._position = {int(r): i for i, r in enumerate(rowids)}

    @classmethod
    def build_from_tokens(
        cls,
        tokens: Sequence[Sequence[str]],
        rowids: np.ndarray,
        terms_of: Callable[[str], Sequence[str]],
        analysis: int = 1,
    ) -> LexicalIndex:
        """Index one token list per passage, each token standing for the terms `terms_of` gives
        (`analysis`: the version of that analysis, saved with the index).

        bm25s gets term ids rather than strings, and each distinct token's ids are worked out
        once. Over the 83,329 passages of the whole corpus every BM25 column was identical to
        bm25s's own build from the term strings, and terms plus index took 3.2 s instead of
        5.15 s (eval/RESULTS.md).
        """
        import bm25s

        vocabulary: dict[str, int] = {}
        ids_of: dict[str, list[int]] = {}
        corpus: list[list[int]] = []
        for passage in tokens:
            ids: list[int] = []
            for token in passage:
                found = ids_of.get(token)
                if found is None:
                    found = [vocabulary.setdefault(t, len(vocabulary)) for t in terms_of(token)]
                    ids_of[token] = found
                ids.extend(found)
            corpus.append(ids or [vocabulary.setdefault(NO_TERMS, len(vocabulary))])
        retriever = bm25s.BM25(k1=BM25_K1, b=BM25_B)
        if corpus:
            retriever.index((corpus, vocabulary), show_progress=False)
        return cls(retriever, np.asarray(rowids, dtype=np.int64), analysis)

    def save(self, folder: Path) -> None:
        """Write the index as bm25s arrays plus `rowids.npy` and `analysis.json` (no pickle)."""
        folder.mkdir(parents=True, exist_ok=True)
        if len(self.rowids):
            self._retriever.save(str(folder))
        np.save(folder / "rowids.npy", self.rowids, allow_pickle=False)
        (folder / ANALYSIS_FILE).write_text(json.dumps({"analysis": self.analysis}), "utf-8")

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        """Read an index written by `save`."""
        import bm25s

        rowids = np.load(folder / "rowids.npy", allow_pickle=False)
        retriever = bm25s.BM25.load(str(folder)) if len(rowids) else bm25s.BM25()
        return cls(retriever, rowids, stored_analysis(folder))

    def __len__(self) -> int:
        return len(self.rowids)

    def search(
        self, terms: Sequence[str], k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, row ids) of the best `k` passages with a positive score.

        Args:
            terms: Query terms, analysed like the passages' terms.
            k: How many to return at most.
            allowed: Optional passage row ids the results must come from (filters).
        """
        if not len(self.rowids) or not terms:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        scores = self._scores(terms)
        if allowed is not None:
            mask = np.zeros(len(self.rowids), dtype=bool)
            mask[[self._position[int(r)] for r in allowed if int(r) in self._position]] = True
            scores[~mask] = 0.0
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.lexsort((top, -scores[top]))]  # best first, ties by position
        top = top[scores[top] > 0]
        return scores[top], self.rowids[top]

    def _scores(self, terms: Sequence[str]) -> np.ndarray:
        """BM25 score of every passage: the sum of the query terms' precomputed columns.

        bm25s stores each term's per-passage scores as a sparse column; adding the columns of
        the query's terms gives the scores `BM25.retrieve` computes, in a tenth of its time
        (0.21 against 2.33 ms a query over 83,329 passages, eval/RESULTS.md). A term repeated
        in the query counts once per occurrence, as there.
        """
        matrix = self._retriever.scores
        data, indices, indptr = matrix["data"], matrix["indices"], matrix["indptr"]
        vocabulary = self._retriever.vocab_dict
        scores = np.zeros(len(self.rowids), dtype=np.float32)
        for term in terms:
            column = vocabulary.get(term)
            if column is not None:
                start, end = indptr[column], indptr[column + 1]
                scores[indices[start:end]] += data[start:end]
        return scores


def stored_analysis(folder: Path) -> int:
    """The analysis version of the lexical index saved in `folder` (1 when not recorded)."""
    try:
        return int(json.loads((folder / ANALYSIS_FILE).read_text("utf-8"))["analysis"])
    except (OSError, ValueError, KeyError, TypeError):
        return 1
