"""Vietnamese word segmentation with underthesea, batched and optionally spread over processes."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import cache

from nlp.normalize import fold_accents, has_diacritics, normalize_text

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@cache
def _tokenizer():  # noqa: ANN202 - underthesea's function type is not exported
    from underthesea import word_tokenize  # lazy: loads a CRF model (~1 s)

    word_tokenize("khởi động")  # warm the model once
    return word_tokenize


def segment_text(text: str) -> list[str]:
    """Segment one text into words; a multi-syllable word is joined by `_` (`kỷ_luật`).

    Args:
        text: Normalised text.

    Returns:
        The words in order, punctuation included as its own tokens.
    """
    if not text.strip():
        return []
    # underthesea re-normalises tone marks its own way; bring words back to the project's style.
    return [normalize_text(word).replace(" ", "_") for word in _tokenizer()(text)]


def _segment_chunk(texts: Sequence[str]) -> list[list[str]]:
    return [segment_text(text) for text in texts]


def segment_texts(texts: Sequence[str], workers: int = 1) -> list[list[str]]:
    """Segment a batch of texts, in order, using up to `workers` processes.

    Args:
        texts: Normalised texts.
        workers: Processes to use; 1 segments in this process, 0 uses every core.

    Returns:
        One token list per text.
    """
    workers = os.cpu_count() or 1 if workers == 0 else workers
    if workers <= 1 or len(texts) < 2 * workers:
        return _segment_chunk(texts)
    size = -(-len(texts) // (workers * 4))
    chunks = [texts[i : i + size] for i in range(0, len(texts), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [tokens for chunk in pool.map(_segment_chunk, chunks) for tokens in chunk]


def _exit_with(parent: int) -> None:
    """Worker initializer: end the worker once the indexing process is gone (even SIGKILLed)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


class BackgroundSegmenter:
    """Segments batches in worker processes so that the caller can embed meanwhile.

    `submit(texts)` returns at once; the returned function blocks until the tokens are ready.
    With `workers=0` nothing runs in the background: the function segments when called.
    """

    def __init__(self, workers: int = 1) -> None:
        """Start `workers` processes (forkserver: safe beside a loaded torch)."""
        self.workers = workers
        self._pool = None
        if workers > 0:
            import multiprocessing

            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=context,
                initializer=_exit_with,
                initargs=(os.getpid(),),
            )

    def submit(self, texts: Sequence[str]) -> Callable[[], list[list[str]]]:
        """Start segmenting `texts`; call the result to get one token list per text."""
        if self._pool is None:
            return lambda: _segment_chunk(texts)
        size = max(1, -(-len(texts) // self.workers))
        futures = [
            self._pool.submit(_segment_chunk, texts[i : i + size])
            for i in range(0, len(texts), size)
        ]
        return lambda: [tokens for future in futures for tokens in future.result()]

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> BackgroundSegmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def joined(tokens: Sequence[str]) -> str:
    """Return the joined segmented form, e.g. `kỷ_luật đảng_viên`."""
    return " ".join(tokens)


def _is_word(token: str) -> bool:
    return any(ch.isalnum() for ch in token)


def lexical_terms(tokens: Sequence[str]) -> list[str]:
    """Return the lexical-index terms of a passage's segmented tokens.

    Each word appears lower-cased as itself (`kỷ_luật`); a word with diacritics also appears
    accent-folded (`ky_luat`), and a multi-syllable word also as its folded syllables (`ky`,
    `luat`), so that a query typed without diacritics, which cannot be segmented reliably,
    matches by syllables and syllable pairs (see `query_terms`).
    """
    terms: list[str] = []
    for token in tokens:
        word = token.lower()
        if not _is_word(word):
            continue
        terms.append(word)
        folded = fold_accents(word)
        if folded != word:
            terms.append(folded)
        if "_" in folded:
            terms.extend(s for s in folded.split("_") if s)
    return terms


def query_terms(query: str) -> list[str]:
    """Return the lexical terms of a normalised query.

    A query with diacritics is segmented like the passages and matched on exact words. A query
    without diacritics is matched on its syllables and adjacent syllable pairs (`ky`, `luat`,
    `ky_luat`), which meet the folded words and syllables of `lexical_terms`.
    """
    if has_diacritics(query):
        return [t.lower() for t in segment_text(query) if _is_word(t)]
    syllables = [s for s in re.split(r"[^\w]+", query.lower()) if s]
    pairs = [f"{a}_{b}" for a, b in zip(syllables, syllables[1:], strict=False)]
    return syllables + pairs
