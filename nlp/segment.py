"""Vietnamese word segmentation with underthesea, batched and optionally spread over processes."""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from nlp.errors import DocumentReadError
from nlp.normalize import fold_accents, has_diacritics, has_words, normalize_text
from nlp.paragraphs import SECTION_SEPARATOR, Passage, split_passages
from nlp.reader import read_document

os.environ.setdefault("HF_HUB_OFFLINE", "1")


_UNUSED_UNDERTHESEA = (
    "underthesea.pipeline.classification",
    "underthesea.pipeline.sentiment",
    "underthesea.pipeline.lang_detect",
    "underthesea.pipeline.dependency_parse",
    "underthesea.pipeline.translate",
    "underthesea.agent",
    "underthesea.address",
)


@cache
def _tokenizer():  # noqa: ANN202 - underthesea's function type is not exported
    # underthesea imports every optional pipeline of its own on import (translation through
    # transformers and torch, classifiers, an agent): 1.8 s here, against 0.3 s for word
    # segmentation alone. A None entry in sys.modules makes those imports fail, which
    # underthesea allows; the entries are removed again afterwards.
    blocked = [name for name in _UNUSED_UNDERTHESEA if name not in sys.modules]
    sys.modules.update(dict.fromkeys(blocked))
    try:
        from underthesea import word_tokenize  # lazy: loads a CRF model
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]

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
    return [_word_form(word) for word in _tokenizer()(text)]


@lru_cache(maxsize=1 << 18)
def _word_form(word: str) -> str:
    # Cached: a corpus repeats its words, and normalising each occurrence again cost about a
    # sixth of segmentation time.
    return normalize_text(word).replace(" ", "_")


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


def _start_worker(parent: int) -> None:
    """Worker initializer: keep numerical libraries to one thread (every core already runs a
    worker), load the segmentation model, and end the worker once the indexing process is gone
    (even SIGKILLed)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    _tokenizer()  # load the CRF model before the first document arrives

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


# What a worker may compute from a document beside its tokens: (texts, tokens, sections) ->
# one row per passage (the indexer's topic-classifier text logits).
BatchScorer = Callable[[Sequence[str], list[list[str]], Sequence[str]], np.ndarray]


@dataclass
class SegmentedDocument:
    """A document read, split into passages and segmented, ready to embed and store."""

    passages: list[Passage]
    tokens: list[list[str]]
    scores: np.ndarray | None = None


def read_and_segment(
    path: str,
    title: str | None = None,
    score: BatchScorer | None = None,
    on_split: Callable[[list[Passage]], None] | None = None,
) -> SegmentedDocument:
    """Read `path`, split it into passages and segment them (what a worker does per file).

    `on_split`, when given, is called with the passages before they are segmented.

    Raises:
        DocumentReadError: The file cannot be read, or holds no paragraphs of text.
    """
    passages = split_passages(read_document(path, title=title))
    if not passages:
        raise DocumentReadError(path, "no paragraphs of text found")
    if on_split is not None:
        on_split(passages)
    texts = [p.text for p in passages]
    tokens = _segment_chunk(texts)
    scores = score(texts, tokens, [p.section for p in passages]) if score else None
    return SegmentedDocument(passages, tokens, scores)


class BackgroundSegmenter:
    """Reads, splits and segments documents in worker processes while the caller embeds.

    `submit(path)` returns at once; the returned function blocks until the document is ready
    (and re-raises its `DocumentReadError`). With `workers=0` nothing runs in the background:
    the function does the work when called. A `score` function (picklable: a module-level
    function or a partial of one) is run by the workers on each document after segmenting it.
    """

    def __init__(
        self, workers: int = 1, score: BatchScorer | None = None, preload: Sequence[str] = ()
    ) -> None:
        """Start `workers` processes (forkserver: safe beside a loaded torch).

        Args:
            workers: Worker processes; 0 does the work in the caller, when asked for it.
            score: Run by the workers on each document after segmenting it.
            preload: Modules `score` needs, imported once in the server the workers are
                forked from instead of in every worker (when this process starts that server).
        """
        self.workers = workers
        self.score = score if workers > 0 else None
        self._pool = None
        if workers > 0:
            import multiprocessing

            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["nlp.segment", *preload])
            self._pool = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=context,
                initializer=_start_worker,
                initargs=(os.getpid(),),
            )

    def submit(
        self,
        path: str,
        title: str | None = None,
        on_split: Callable[[list[Passage]], None] | None = None,
    ) -> Callable[[], SegmentedDocument]:
        """Start reading and segmenting `path`; call the result to get the document.

        `on_split` is called with the passages before they are segmented, by documents read
        in this process (`workers=0`) only.
        """
        if self._pool is None:
            return lambda: read_and_segment(path, title, on_split=on_split)
        return self._pool.submit(read_and_segment, path, title, self.score).result

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


# Bump when `token_terms` or `query_terms` change what a passage or a query is matched on: an
# index whose lexical part was built by another version is rebuilt by `vnsearch index`.
LEXICAL_ANALYSIS = 3
# Inside a token: the syllable joint of a segmented word and the punctuation of "COVID-19",
# "Việt Nam-Campuchia", "1.587" or "301-QĐ/TW".
_PARTS = re.compile(r"[\W_]+")
_EDGE = re.compile(r"^[\W_]+|[\W_]+$")


def lexical_terms(tokens: Sequence[str]) -> list[str]:
    """Return the lexical-index terms of a passage's segmented tokens.

    Each word appears lower-cased as itself (`kỷ_luật`) and, when it has diacritics,
    accent-folded (`ky_luat`). A word of several syllables or a token with punctuation inside
    ("covid-19", "1.587") also appears as its parts, as written and folded (`kỷ`, `luật`, `ky`,
    `luat`; `covid`, `19`), so that a query matches a syllable inside a compound, a compound
    the query's segmentation cut elsewhere, and a part of a hyphenated name or number (see
    `query_terms`).
    """
    terms: list[str] = []
    for token in tokens:
        terms.extend(token_terms(token))
    return terms


@lru_cache(maxsize=1 << 18)
def token_terms(token: str) -> tuple[str, ...]:
    """Return the lexical-index terms of one segmented token (see `lexical_terms`)."""
    # A corpus repeats its words: caching per word made indexing's term pass several times
    # faster than working each occurrence out again.
    word = token.lower()
    if not has_words(word):
        return ()
    terms = dict.fromkeys([word, fold_accents(word)])
    syllables = [s for s in (_EDGE.sub("", s) for s in word.split("_")) if s]
    for syllable in syllables if len(syllables) > 1 else []:  # "25.527_suất": "25.527"
        terms.update(dict.fromkeys([syllable, fold_accents(syllable)]))
    for syllable in syllables:
        parts = [part for part in _PARTS.split(syllable) if part]
        for part in parts if len(parts) > 1 else []:  # "covid-19": "covid", "19"
            terms.update(dict.fromkeys([part, fold_accents(part)]))
    return tuple(terms)


_ARTICLE_HEADING = re.compile(r"^Điều\s+(\d+[a-z]?)\b")


def section_tokens(section: str) -> list[str]:
    """Tokens a passage's section path adds to its lexical terms: the label of the article it
    sits in, as one word ("Điều_5"), so that the query `Điều 5` (whose pair is `điều_5`) finds
    the paragraphs of that article, whose heading is section metadata, not text."""
    for heading in reversed(section.split(SECTION_SEPARATOR)) if section else []:
        if (match := _ARTICLE_HEADING.match(heading.strip())) is not None:
            return [f"Điều_{match.group(1)}"]
    return []


def query_terms(query: str) -> list[str]:
    """Return the lexical terms of a normalised query.

    The query's syllables and adjacent syllable pairs (`kỷ`, `luật`, `kỷ_luật`) meet the words
    and parts of `lexical_terms`, whatever the query's own segmentation: a two-syllable word is
    its pair, and a longer one or a syllable inside a compound meets the parts. A token with
    punctuation inside ("1.587", "covid-19") is also a term as a whole. A query with diacritics
    adds its segmented words and is matched as written; one without is matched on the
    accent-folded forms.
    """
    text = query.lower()
    exact = has_diacritics(query)
    if not exact:
        text = fold_accents(text)
    whole = [t for t in (_EDGE.sub("", token) for token in text.split()) if _PARTS.search(t)]
    syllables = [s for s in _PARTS.split(text) if s]
    pairs = [f"{a}_{b}" for a, b in zip(syllables, syllables[1:], strict=False)]
    words = [t.lower() for t in segment_text(query) if has_words(t) and "_" in t] if exact else []
    return list(dict.fromkeys(words + whole + syllables + pairs))
