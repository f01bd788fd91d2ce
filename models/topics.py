"""Topic classifier for report paragraphs: TF-IDF blocks plus passage embeddings, linear model.

Labels follow `shared/labels/GUIDE.md`: ideology, organisation, inspection, mass_mobilisation,
anti_corruption and other. A paragraph is represented by three TF-IDF blocks (underthesea words
and word bigrams, character n-grams of the lower-cased text, and the words of its section
heading when one is given) and, by default, a dense block: its passage embedding from
`models.embedder.Embedder` (multilingual-e5-small, `passage: ` prefix), scaled by a fixed
weight. The blocks are concatenated and fed to a class-weighted multinomial logistic regression
whose probabilities are softened by one temperature fitted on held-out documents. The dense
block is the vector the indexer already stores for each passage, so indexing pays for it once;
grouped cross-validation and the transfer between label sources both favour it over TF-IDF
alone (numbers in the model manifest and `eval/train_topics.py`).

A model may also carry a second head for paragraphs read within their document
(`TopicClassifier.context_model`): the same features plus the mean passage vector of the
paragraph's document (`EmbeddingBlock.context`), trained on the examples within their documents
(`document_contexts`). `predict(documents=...)` (the indexer: each file's paragraphs are one
document) uses that head; a text given without a document is read by the first head, alone.

Training sources (`default_training_examples`) are combined in order of trust:

1. `shared/labels/topics-dev.jsonl`: paragraphs labelled by two independent readers; the group
   of each row is its `file`.
2. `models/topic_labels.jsonl`: labels added for this project, stored as references (corpus
   file + SHA-1 of the normalised passage text, never the text) and resolved against
   `shared/corpus` with `nlp.paragraphs.split_passages`.
3. The sample report in `shared/corpus/reports/`: paragraphs under its numbered headings of
   part I (1. chính trị, tư tưởng -> ideology ... 5. nội chính, phòng, chống tham nhũng ->
   anti_corruption) and under part II (Mặt trận Tổ quốc and mass organisations ->
   mass_mobilisation). Each such paragraph was read; `_REPORT_EXCLUDED` lists any whose content
   contradicts its heading.

Rows are deduplicated by their normalised text; on a conflict the earlier source wins, so the
dev labels always win. Every example keeps its document as `group`, so cross-validation can
hold out whole documents. Dev rows get their section heading from the corpus when their
paragraph is found there, so training sees headings as the indexer will pass them.

The model folder holds plain JSON and `.npy` arrays (no pickle) and a manifest written last.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.embedder import PASSAGE_INPUT, embed_under_headings
from nlp.errors import DocumentReadError, InvalidInputError, ModelError
from nlp.normalize import fold_accents, has_diacritics, normalize_text
from nlp.restore import DiacriticRestorer

if TYPE_CHECKING:
    from models.embedder import Embedder
    from nlp.paragraphs import Passage

TOPICS: tuple[str, ...] = (
    "ideology",
    "organisation",
    "inspection",
    "mass_mobilisation",
    "anti_corruption",
    "other",
)

FORMAT_NAME = "vnsearch-topic-model"
# Version 2 adds the optional dense embedding block, version 3 its optional document context;
# older folders still load.
FORMAT_VERSION = 3
READABLE_FORMAT_VERSIONS = (1, 2, 3)
MANIFEST_NAME = "manifest.json"
CONTEXT_MODEL_DIR = "within_documents"  # the folder of `TopicClassifier.context_model`
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "topic_model"
DEFAULT_LABELS_PATH = Path(__file__).resolve().parent / "topic_labels.jsonl"
DEFAULT_SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"
DEV_LABELS = Path("labels") / "topics-dev.jsonl"

SOURCE_DEV = "dev"
SOURCE_OWN = "own"
SOURCE_REPORT = "report"

# Scale of the unit-length passage embeddings beside the L2-normalised TF-IDF blocks (weights
# 1, 1 and 0.5): chosen by grouped CV over weights 1-5 (see `eval/train_topics.py`).
DEFAULT_EMBEDDING_WEIGHT = 3.0
# Weight of a document's mean logits added to each of its paragraphs' (`predict(documents=)`)
# by a model without a head that reads documents. `python -m eval.train_topics --mode
# documents` (grouped CV over the dev documents, every paragraph of a held-out document
# classified, seeds 0 and 1), such a model: macro-F1 0.776 at 0, 0.799 at 0.5, 0.785 at 1.0.
# With the head (`context_model`) they only lowered it: 0.834 at 0, 0.802 at 0.5, 0.742 at 1.
DOCUMENT_WEIGHT = 0.5
# Scale of the document's mean passage vector beside the paragraph's own in the head that reads
# paragraphs within their documents (`EmbeddingBlock.context`, `train_classifier(contexts=)`).
# A one-off script over the documents-mode folds (no logits added): macro-F1 0.819 at 1, 0.833
# at 2; the shipped recipe at 2 gives 0.834 (eval/RESULTS.md).
DEFAULT_CONTEXT_WEIGHT = 2.0
# The classifier embeds texts itself with int8 ONNX on the CPU, truncated like the indexer's.
EMBEDDING_MAX_LENGTH = 256

_TRAIN_HINT = (
    "train one with `vnsearch train --out DIR` (or `python -m eval.train_topics --out DIR`)"
)
_DIGITS = re.compile(r"\d+")
_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$")
_MARKUP = re.compile(r"[*#|`_>]+")
_SPACES = re.compile(r"\s+")
# Distinct words whose character n-gram ids a feature block keeps (`FeatureBlock`).
WORD_IDS_CACHE = 1 << 18
_SECTION_WORD = re.compile(r"[^\W\d_]+")
_WORDS = re.compile(r"[^\W\d_]{2,}")
RESTORE_FILE = "restore.json"  # `TopicClassifier.restorer`, in the first head's folder
_ROMAN_NUMERAL = re.compile(r"^[ivxlc]+$")

# Part I headings of the sample report, matched on their accent-folded form.
_REPORT_HEADINGS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^1\. cong tac chinh tri, tu tuong"), "ideology"),
    (re.compile(r"^2\. cong tac to chuc xay dung dang"), "organisation"),
    (re.compile(r"^3\. cong tac kiem tra, giam sat"), "inspection"),
    (re.compile(r"^4\. cong tac dan van"), "mass_mobilisation"),
    (re.compile(r"^5\. cong tac noi chinh"), "anti_corruption"),
)
_REPORT_PART_ONE = re.compile(r"^i\. ket qua thuc hien nhiem vu cong tac xay dung dang")
_REPORT_PART_TWO = re.compile(r"^ii\. ket qua hoat dong cua mat tran to quoc")
# Paragraphs under a heading whose content contradicts it (SHA-1 prefixes of the normalised
# text). Every paragraph under the mapped headings was read; none contradicts its heading
# clearly enough to be left out, so the set is empty and kept as the place to record one.
_REPORT_EXCLUDED: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TopicPrediction:
    """The most probable topic of one paragraph and the probability of every topic."""

    topic: str
    scores: dict[str, float]


@dataclass(frozen=True)
class LabelledExample:
    """A paragraph with its topic; `group` is its source document, for grouped CV."""

    text: str
    label: str
    group: str
    section: str = ""
    source: str = ""


def markup_free(text: str) -> str:
    """Return `text` normalised and without Markdown marks, to find a labelled row's passage.

    Labelled rows keep the marks of a Markdown file (`**(2)** Xây dựng`, `# Toàn văn`); the
    reader drops them from the passages it splits.
    """
    return _SPACES.sub(" ", _MARKUP.sub(" ", normalize_text(text))).strip()


def text_sha1(text: str) -> str:
    """Return the SHA-1 hex digest of the normalised `text` (the key of label references)."""
    return hashlib.sha1(normalize_text(text).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- training data


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for the non-blank lines of a JSONL file."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot open ({exc.strerror})") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InvalidInputError(
                    f"{path} line {number}: not valid JSON ({exc}); write one JSON object a line"
                ) from None
            if not isinstance(row, dict):
                raise InvalidInputError(
                    f"{path} line {number}: expected a JSON object like "
                    '{"text": ..., "label": ...}, got ' + type(row).__name__
                )
            yield number, row


def _check_label(path: Path, number: int, label: object) -> str:
    if not isinstance(label, str) or label not in TOPICS:
        raise InvalidInputError(
            f"{path} line {number}: label {label!r} is not one of {', '.join(TOPICS)}; "
            "fix the label or remove the row"
        )
    return label


def _optional_str(path: Path, number: int, row: dict[str, Any], key: str) -> str:
    value = row.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{path} line {number}: '{key}' must be a string, got {type(value).__name__}"
        )
    return value


def load_labelled(path: str | os.PathLike[str]) -> list[LabelledExample]:
    """Read labelled paragraphs from a JSONL file.

    Each line is an object with `text` and `label` (one of `TOPICS`) and optionally `file` or
    `doc` (the source document, used as the CV group) and `section`. A row without a document
    is its own group. Blank lines are skipped.

    Args:
        path: The JSONL file.

    Returns:
        The examples in file order, text normalised.

    Raises:
        InvalidInputError: The file cannot be read or a row is not valid; the message names the
            line and what to change.
    """
    path = Path(path)
    examples = []
    for number, row in _read_jsonl(path):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError(
                f"{path} line {number}: 'text' must be a non-empty string; "
                "add the paragraph text or remove the row"
            )
        label = _check_label(path, number, row.get("label"))
        group = _optional_str(path, number, row, "file") or _optional_str(path, number, row, "doc")
        examples.append(
            LabelledExample(
                text=normalize_text(text),
                label=label,
                group=group or f"{path.name}:{number}",
                section=normalize_text(_optional_str(path, number, row, "section")),
            )
        )
    return examples


def _document_passages(corpus_dir: Path, file: str) -> list[Passage]:
    from nlp.paragraphs import split_passages  # lazy: only training reads the corpus
    from nlp.reader import read_document

    return split_passages(read_document(corpus_dir / file))


def load_label_references(
    path: str | os.PathLike[str], corpus_dir: str | os.PathLike[str]
) -> list[LabelledExample]:
    """Resolve label references (`file`, `sha1`, `label`, optional `note`) against a corpus.

    Args:
        path: A JSONL file of references; `file` is a path under `corpus_dir`, `sha1` the hex
            SHA-1 (a prefix of 8 or more characters) of the normalised passage text.
        corpus_dir: The corpus folder (`shared/corpus`).

    Returns:
        One example per reference, with the passage's text and section; group is `file`.

    Raises:
        InvalidInputError: A row is not valid, or a reference matches no passage (the corpus
            changed): the message lists them so they can be fixed or removed.
    """
    path, corpus_dir = Path(path), Path(corpus_dir)
    rows: list[tuple[int, str, str, str]] = []
    for number, row in _read_jsonl(path):
        file, digest = row.get("file"), row.get("sha1")
        if not isinstance(file, str) or not file:
            raise InvalidInputError(f"{path} line {number}: 'file' (a path under corpus/) missing")
        if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{8,40}", digest):
            raise InvalidInputError(
                f"{path} line {number}: 'sha1' must be 8-40 lower-case hex digits of the SHA-1 "
                "of the normalised passage text"
            )
        rows.append((number, file, digest, _check_label(path, number, row.get("label"))))

    passages_by_file: dict[str, dict[str, Passage]] = {}
    unreadable: dict[str, str] = {}
    examples, missing = [], []
    for number, file, digest, label in rows:
        if file not in passages_by_file:
            try:
                passages = _document_passages(corpus_dir, file)
            except DocumentReadError as exc:  # reported below with the rows that need it
                passages, unreadable[file] = [], exc.reason
            passages_by_file[file] = {text_sha1(p.text): p for p in passages}
        found = [p for key, p in passages_by_file[file].items() if key.startswith(digest)]
        if len(found) != 1:
            why = unreadable.get(file) or f"{len(found)} passages match {digest}"
            missing.append(f"line {number} ({file}: {why})")
            continue
        examples.append(
            LabelledExample(
                text=normalize_text(found[0].text),
                label=label,
                group=file,
                section=normalize_text(found[0].section),
                source=SOURCE_OWN,
            )
        )
    if missing:
        raise InvalidInputError(
            f"{path}: {len(missing)} reference(s) resolve to no single passage of {corpus_dir}: "
            f"{'; '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; restore the corpus "
            "files or remove these rows"
        )
    return examples


def report_section_examples(corpus_dir: str | os.PathLike[str]) -> list[LabelledExample]:
    """Label the sample reports' paragraphs by the numbered heading they sit under.

    Args:
        corpus_dir: The corpus folder; every `.txt` report in `reports/` is read.

    Returns:
        Examples for paragraphs under part I headings 1-5 and part II (mass organisations).
    """
    corpus_dir = Path(corpus_dir)
    examples = []
    for report in sorted((corpus_dir / "reports").glob("*.txt")):
        file = report.relative_to(corpus_dir).as_posix()
        for passage in _document_passages(corpus_dir, file):
            label = _report_heading_label(passage.section)
            if label is None or text_sha1(passage.text)[:16] in _REPORT_EXCLUDED:
                continue
            examples.append(
                LabelledExample(
                    text=normalize_text(passage.text),
                    label=label,
                    group=file,
                    section=normalize_text(passage.section),
                    source=SOURCE_REPORT,
                )
            )
    return examples


def _report_heading_label(section: str) -> str | None:
    from nlp.paragraphs import SECTION_SEPARATOR

    parts = [fold_accents(part) for part in section.split(SECTION_SEPARATOR)]
    if len(parts) < 2:
        return None
    if _REPORT_PART_TWO.match(parts[0]):
        return "mass_mobilisation"
    if _REPORT_PART_ONE.match(parts[0]):
        for pattern, label in _REPORT_HEADINGS:
            if pattern.match(parts[1]):
                return label
    return None


def _attach_sections(examples: list[LabelledExample], corpus_dir: Path) -> list[LabelledExample]:
    """Give examples without a section the heading of their paragraph in the corpus."""
    by_file: dict[str, dict[str, str]] = {}
    result = []
    for example in examples:
        if example.section or not (corpus_dir / example.group).is_file():
            result.append(example)
            continue
        if example.group not in by_file:
            try:
                passages = _document_passages(corpus_dir, example.group)
            except DocumentReadError:  # an unreadable file only leaves the sections empty
                passages = []
            by_file[example.group] = {markup_free(p.text): p.section for p in passages}
        section = by_file[example.group].get(markup_free(example.text), "")
        result.append(replace(example, section=normalize_text(section)))
    return result


def combine_sources(*sources: Sequence[LabelledExample]) -> list[LabelledExample]:
    """Concatenate sources, keeping the first example of each normalised text.

    Args:
        sources: Example lists, most trusted first.

    Returns:
        The deduplicated examples in order.
    """
    seen: set[str] = set()
    combined = []
    for source in sources:
        for example in source:
            key = normalize_text(example.text)
            if key in seen:
                continue
            seen.add(key)
            combined.append(example)
    return combined


def default_training_examples(
    shared_dir: str | os.PathLike[str] | None = None,
    labels_path: str | os.PathLike[str] | None = None,
) -> list[LabelledExample]:
    """Return the default training set: dev labels, this project's labels and the report.

    Args:
        shared_dir: The `shared/` folder (labels and corpus); defaults to the one beside the
            repository.
        labels_path: This project's label references; defaults to `models/topic_labels.jsonl`.

    Returns:
        Deduplicated examples (see the module docstring for the order of trust), each tagged
        with its `source` (`dev`, `own` or `report`).

    Raises:
        InvalidInputError: A source file is missing or has a bad row.
    """
    shared = Path(shared_dir) if shared_dir is not None else DEFAULT_SHARED_DIR
    corpus = shared / "corpus"
    dev = [replace(e, source=SOURCE_DEV) for e in load_labelled(shared / DEV_LABELS)]
    dev = _attach_sections(dev, corpus)
    own = load_label_references(labels_path or DEFAULT_LABELS_PATH, corpus)
    report = report_section_examples(corpus)
    return combine_sources(dev, own, report)


def example_vectors(examples: Sequence[LabelledExample], embedder: Embedder) -> np.ndarray:
    """Return the passage vectors of labelled examples, as `train_classifier` embeds them:
    each normalised paragraph under its section heading (`passage_input`), as the index does."""
    texts = [normalize_text(example.text) for example in examples]
    return embed_under_headings(embedder, texts, [example.section for example in examples])


def document_contexts(
    examples: Sequence[LabelledExample],
    corpus_dir: str | os.PathLike[str],
    embed: Callable[[Sequence[Passage]], np.ndarray],
    own: np.ndarray,
) -> np.ndarray:
    """Return the mean passage vector of each example's document, read as the indexer reads it.

    The training side of a document context (`train_classifier(contexts=...)`).

    Args:
        examples: Labelled paragraphs whose `group` is their file under `corpus_dir`.
        corpus_dir: The folder the files are relative to (e.g. `shared/corpus`).
        embed: Embeds a document's passages as the index does (`embed_under_headings`).
        own: The examples' own passage vectors: the context of an example whose file is not
            there, cannot be read, or holds one passage (it is then read alone).

    Returns:
        A float32 array (examples, dim).
    """
    corpus = Path(corpus_dir)
    contexts = np.array(own, dtype=np.float32)
    rows_of: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        rows_of.setdefault(example.group, []).append(i)
    for group, rows in rows_of.items():
        try:
            passages = _document_passages(corpus, group)
        except DocumentReadError:  # not there, or not readable: read alone
            continue
        if len(passages) > 1:
            contexts[rows] = np.asarray(embed(passages), dtype=np.float32).mean(axis=0)
    return contexts


# --------------------------------------------------------------------------- features


def word_document(tokens: Sequence[str]) -> str:
    """Return the word-feature string of segmented tokens: lower case, digits as 0, no punctuation.

    Args:
        tokens: Words from `nlp.segment.segment_texts` (`kỷ_luật`).

    Returns:
        Space-separated words.
    """
    words = []
    for token in tokens:
        word = _EDGE_PUNCT.sub("", token.lower())
        if word:
            words.append(_DIGITS.sub("0", word))
    return " ".join(words)


def char_document(text: str) -> str:
    """Return the character-feature string of a text: normalised, lower case, digits as 0.

    Markdown emphasis, table bars and heading marks are dropped: labelled rows keep them, the
    indexer's passages do not.
    """
    text = _MARKUP.sub(" ", _DIGITS.sub("0", normalize_text(text).lower()))
    return _SPACES.sub(" ", text).strip()


def section_document(section: str) -> str:
    """Return the words of a section path, lower case, without numbers and roman numerals."""
    words = _SECTION_WORD.findall(normalize_text(section).lower())
    return " ".join(word for word in words if not _ROMAN_NUMERAL.match(word))


@dataclass
class FeatureBlock:
    """One TF-IDF block with a fixed vocabulary: sublinear tf x idf, L2-normalised, weighted."""

    name: str
    analyzer: str
    ngram_range: tuple[int, int]
    weight: float
    vocabulary: list[str]
    idf: np.ndarray
    _counter: Any = field(default=None, init=False, repr=False, compare=False)
    # char_wb n-grams never cross a space, so each word's vocabulary ids are found once.
    _word_ids: dict[str, np.ndarray] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def transform(self, documents: Sequence[str]) -> Any:
        """Return the weighted TF-IDF rows (a CSR matrix) of `documents`."""
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize

        if self._counter is None:
            self._counter = CountVectorizer(
                analyzer=self.analyzer,
                ngram_range=self.ngram_range,
                vocabulary={term: i for i, term in enumerate(self.vocabulary)},
                token_pattern=r"\S+" if self.analyzer == "word" else None,
                lowercase=False,
                dtype=np.float32,
            )
        if self.analyzer == "char_wb":
            counts = self._char_wb_counts(documents)
        else:
            counts = self._counter.transform(documents).tocsr()
        counts.data = (np.log(counts.data) + 1.0).astype(np.float32)
        counts = counts.multiply(self.idf.astype(np.float32)).tocsr()
        return normalize(counts) * np.float32(self.weight)

    def _char_wb_counts(self, documents: Sequence[str]) -> Any:
        """The counts `CountVectorizer.transform` gives, built from each word's cached ids.

        Words repeat: the 1,001 passages of `eval.bench_index --n 1000` hold 2,370 distinct
        words in 37,513. `predict` on them took 0.31 s with sklearn's counting, 0.20 s with
        this (one-off timing, eval/RESULTS.md).
        """
        from scipy.sparse import csr_matrix

        analyze, index = self._counter.build_analyzer(), self._counter.vocabulary
        ids_of = self._word_ids
        if len(ids_of) > WORD_IDS_CACHE:
            ids_of.clear()
        pieces: list[np.ndarray] = []
        ends = np.zeros(len(documents) + 1, dtype=np.int64)
        for row, document in enumerate(documents):
            size = 0
            for word in document.split():
                ids = ids_of.get(word)
                if ids is None:  # sklearn's own n-grams of the word alone
                    grams = analyze(word)
                    ids = np.array([index[g] for g in grams if g in index], dtype=np.int32)
                    ids_of[word] = ids
                pieces.append(ids)
                size += len(ids)
            ends[row + 1] = ends[row] + size
        indices = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
        counts = csr_matrix(
            (np.ones(len(indices), dtype=np.float32), indices, ends),
            shape=(len(documents), len(self.vocabulary)),
        )
        counts.sum_duplicates()  # sorted indices, one entry per n-gram with its count
        return counts


@dataclass(frozen=True)
class FeatureSpec:
    """How to build one feature block when training."""

    name: str
    analyzer: str
    ngram_range: tuple[int, int]
    weight: float
    min_df: int
    max_features: int


DEFAULT_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("words", "word", (1, 2), 1.0, 2, 20000),
    FeatureSpec("chars", "char_wb", (2, 4), 1.0, 3, 20000),
    FeatureSpec("section", "word", (1, 2), 0.5, 2, 3000),
)


@dataclass(frozen=True)
class EmbeddingBlock:
    """The dense block: passage embeddings of one embedding model, multiplied by `weight`.

    `model` is the embedder's name (`Embedder.name`) and `fingerprint` its `Embedder.fingerprint`;
    vectors from an embedder with another fingerprint must not be fed to the weights. With
    `context` above 0 the block has a second half: the mean vector of the paragraph's document
    (`document_means`; the paragraph's own vector when it is read alone), times `context`.
    """

    model: str
    fingerprint: str
    dim: int
    weight: float
    context: float = 0.0

    @property
    def width(self) -> int:
        """Columns of the block in the weights."""
        return self.dim * (2 if self.context else 1)

    def matrix(self, own: np.ndarray, context: np.ndarray | None = None) -> np.ndarray:
        """Return the weighted block of texts with passage vectors `own` (as checked by
        `_check_embeddings`) and, for a block with a document context, their documents' mean
        vectors (`own` when None)."""
        if not self.context:
            return own * np.float32(self.weight)
        context = own if context is None else _check_embeddings(context, len(own), self)
        return np.hstack([own, context * np.float32(self.context)]) * np.float32(self.weight)


def _block_documents(
    name: str, texts: Sequence[str], tokens: Sequence[Sequence[str]], sections: Sequence[str]
) -> list[str]:
    if name == "words":
        return [word_document(t) for t in tokens]
    if name == "chars":
        return [char_document(t) for t in texts]
    if name == "section":  # the paragraphs under one heading share it: each read once
        documents = {section: section_document(section) for section in set(sections)}
        return [documents[section] for section in sections]
    raise ModelError(f"unknown feature block {name!r}; use words, chars or section")


# --------------------------------------------------------------------------- classifier


def document_means(
    rows: np.ndarray, documents: Sequence[Hashable]
) -> tuple[np.ndarray, np.ndarray]:
    """Return each row's document mean of `rows`, and whether the row shares its document.

    Args:
        rows: One row per text (logits or passage vectors).
        documents: The document key of each row; rows of one document are averaged together.

    Returns:
        (means, shared): float64 (rows, columns), the mean of the row's document (the row
        itself when alone); bool (rows,), True where the document has more than one row.

    Raises:
        InvalidInputError: `documents` does not have one key per row.
    """
    if len(documents) != len(rows):
        raise InvalidInputError(f"{len(documents)} document keys for {len(rows)} texts")
    from scipy.sparse import csr_matrix

    keys: dict[Hashable, int] = {}
    index = np.array([keys.setdefault(key, len(keys)) for key in documents], dtype=np.int64)
    # A documents x rows matrix of ones sums each document's rows: about 1 ms for an indexing
    # batch of 300 passage vectors, where np.add.at took about 8 ms.
    members = csr_matrix(
        (np.ones(len(index)), (index, np.arange(len(index)))), shape=(len(keys), len(index))
    )
    sums = members @ np.asarray(rows, dtype=np.float64)
    counts = np.bincount(index, minlength=len(keys))
    return sums[index] / counts[index, None], counts[index] > 1


def with_document_context(
    logits: np.ndarray, documents: Sequence[Hashable], weight: float | None = None
) -> np.ndarray:
    """Return `logits` plus `weight` times the mean logits of each row's document (rows alone
    in their document are returned as they are).

    Args:
        logits: One row per text (`decision_function`).
        documents: The document key of each row; rows of one document are averaged together.
        weight: Defaults to `DOCUMENT_WEIGHT`.

    Raises:
        InvalidInputError: `documents` does not have one key per row.
    """
    weight = DOCUMENT_WEIGHT if weight is None else weight
    means, shared = document_means(logits, documents)
    # A text alone in its document has no context to add.
    return (logits + np.where(shared[:, None], weight * means, 0.0)).astype(np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


class TopicClassifier:
    """Predict the topic of paragraphs; built by `train_classifier` or loaded from a folder."""

    def __init__(
        self,
        blocks: Sequence[FeatureBlock],
        coef: np.ndarray,
        intercept: np.ndarray,
        labels: Sequence[str] = TOPICS,
        temperature: float = 1.0,
        info: dict[str, Any] | None = None,
        embedding: EmbeddingBlock | None = None,
    ) -> None:
        """Build a classifier from its parts (use `train_classifier` or `load` instead).

        Args:
            blocks: TF-IDF feature blocks in column order.
            coef: Weights, shape (labels, features): the TF-IDF columns, then `embedding.width`
                columns for the dense block when there is one.
            intercept: Biases, shape (labels,).
            labels: Label names in row order of `coef`.
            temperature: Divides the logits before the softmax (fitted on held-out documents).
            info: Training summary stored in the manifest.
            embedding: The dense passage-embedding block, or None for a TF-IDF-only model.

        Raises:
            ModelError: The weights do not fit the blocks.
        """
        sparse_width = sum(len(block.vocabulary) for block in blocks)
        width = sparse_width + (embedding.width if embedding is not None else 0)
        if coef.shape != (len(labels), width) or intercept.shape != (len(labels),):
            raise ModelError(
                f"topic model weights have shape {coef.shape}, expected {(len(labels), width)}; "
                + _TRAIN_HINT
            )
        self.blocks = list(blocks)
        self.embedding = embedding
        self.coef = np.ascontiguousarray(coef, dtype=np.float32)
        self.intercept = np.asarray(intercept, dtype=np.float32)
        self.labels = tuple(labels)
        self.temperature = float(temperature)
        self.info = dict(info or {})
        self._sparse_width = sparse_width
        # The head that reads paragraphs within their documents (`predict(documents=...)`).
        self.context_model: TopicClassifier | None = None
        # The folder `load` read, so that worker processes can load the same model.
        self.source: str | None = None
        # Accented forms of the training paragraphs' words: a text given to `predict` typed
        # without diacritics gets them back before it is read (its words, characters and
        # vector are all learned with diacritics).
        self.restorer: DiacriticRestorer | None = None
        self._embedder: Embedder | None = None
        self._embedder_lock = threading.Lock()

    @property
    def embedding_fingerprint(self) -> str | None:
        """The `Embedder.fingerprint` whose passage vectors the model reads; None without one."""
        return self.embedding.fingerprint if self.embedding is not None else None

    @property
    def embedding_model(self) -> str | None:
        """The name of the embedding model the weights were trained on; None without one."""
        return self.embedding.model if self.embedding is not None else None

    def use_embedder(self, embedder: Embedder) -> None:
        """Embed texts with `embedder` when `predict` gets no embeddings (e.g. the searcher's).

        Args:
            embedder: An `Embedder` of the model the classifier was trained with.

        Raises:
            ModelError: Its fingerprint differs from `embedding_fingerprint`, or the model
                reads no embeddings.
        """
        if self.embedding is None:
            raise ModelError("this topic model uses no embeddings; there is nothing to attach")
        if embedder.fingerprint != self.embedding.fingerprint:
            raise ModelError(
                f"the embedder {embedder.name} has fingerprint {embedder.fingerprint}, but the "
                f"topic model was trained on {self.embedding.model} "
                f"({self.embedding.fingerprint}); pass that model's embedder or retrain: "
                + _TRAIN_HINT
            )
        with self._embedder_lock:
            self._embedder = embedder

    def embed(self, texts: Sequence[str], sections: Sequence[str] | None = None) -> np.ndarray:
        """Return the passage embeddings the dense block reads, computed by the model's embedder.

        The embedder (int8 ONNX, `EMBEDDING_MAX_LENGTH` tokens) is loaded on first use and kept.
        Each paragraph is embedded under its innermost heading (`passage_input`), as the index
        embeds it, so that the indexer can hand its vectors over.

        Args:
            texts: Normalised paragraphs.
            sections: Their section headings ("" or None for none).

        Returns:
            A float32 array (len(texts), dim).

        Raises:
            ModelError: The model reads no embeddings, or its embedder cannot be loaded or has
                another fingerprint (the embedding model changed since training).
        """
        if self.embedding is None:
            raise ModelError("this topic model uses no embeddings")
        with self._embedder_lock:
            if self._embedder is None:
                embedder = shared_embedder(self.embedding.model)
                if embedder.fingerprint != self.embedding.fingerprint:
                    raise ModelError(
                        f"the embedding model {self.embedding.model} now has fingerprint "
                        f"{embedder.fingerprint}, but the topic model was trained on "
                        f"{self.embedding.fingerprint}; retrain it: {_TRAIN_HINT}"
                    )
                self._embedder = embedder
            embedder = self._embedder
        return embed_under_headings(embedder, texts, sections or None)

    def features(
        self,
        texts: Sequence[str],
        tokens: Sequence[Sequence[str]],
        sections: Sequence[str],
        embeddings: np.ndarray | None = None,
        context: np.ndarray | None = None,
    ) -> Any:
        """Return the feature matrix (CSR) of texts with their tokens, headings and embeddings.

        Args:
            texts: Normalised paragraphs.
            tokens: Their word segmentation.
            sections: Their section headings ("" for none).
            embeddings: Their passage embeddings when the model has a dense block; computed
                here when None.
            context: Their documents' mean passage vectors (`document_means`), for a model
                with a document context; None reads each text alone.

        Returns:
            A float32 CSR matrix (len(texts), features), columns in `coef` order.
        """
        dense = self._dense(texts, sections, embeddings, context)
        return _features(self.blocks, texts, tokens, sections, dense)

    def text_logits(
        self,
        texts: Sequence[str],
        tokens: Sequence[Sequence[str]],
        sections: Sequence[str],
        within_documents: bool = False,
    ) -> np.ndarray:
        """Return the part of the logits that the words, characters and headings give.

        The model is linear, so this part can be computed apart from the passage vectors (the
        indexer computes it in its segmenting processes) and passed to `predict`.

        Args:
            texts: Normalised paragraphs.
            tokens: Their word segmentation.
            sections: Their section headings ("" for none).
            within_documents: For `predict(documents=...)`: the part of the head that reads
                paragraphs within their documents, when the model has one.

        Returns:
            A float32 array (texts, labels), before the temperature.
        """
        if within_documents and self.context_model is not None:
            return self.context_model.text_logits(texts, tokens, sections)
        sparse = _features(self.blocks, texts, tokens, sections)
        logits = np.asarray(sparse @ self.coef[:, : self._sparse_width].T) + self.intercept
        return logits.astype(np.float32)

    def decision_function(
        self,
        texts: Sequence[str],
        tokens: Sequence[Sequence[str]],
        sections: Sequence[str],
        embeddings: np.ndarray | None = None,
        text_logits: np.ndarray | None = None,
        context: np.ndarray | None = None,
    ) -> np.ndarray:
        """Return the temperature-scaled logits, shape (texts, labels).

        Args:
            texts: Normalised paragraphs.
            tokens: Their word segmentation.
            sections: Their section headings ("" for none).
            embeddings: Their passage embeddings when the model has a dense block; computed
                here when None.
            text_logits: `text_logits` of these texts when already computed.
            context: Their documents' mean passage vectors (`document_means`), for a model
                with a document context; None reads each text alone.
        """
        dense = self._dense(texts, sections, embeddings, context)
        if text_logits is None:
            logits = self.text_logits(texts, tokens, sections)
        elif np.shape(text_logits) == (len(texts), len(self.labels)):
            logits = np.array(text_logits, dtype=np.float32)
        else:
            raise InvalidInputError(
                f"text_logits has shape {np.shape(text_logits)}; expected "
                f"{(len(texts), len(self.labels))}, from text_logits() of the same texts"
            )
        if dense is not None:
            # The dense columns are multiplied directly: no sparse copy of a dense block.
            logits += dense @ self.coef[:, self._sparse_width :].T
        return logits / self.temperature

    def _dense(
        self,
        texts: Sequence[str],
        sections: Sequence[str],
        embeddings: np.ndarray | None,
        context: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """Return the weighted dense block of `texts`, or None for a TF-IDF-only model."""
        if self.embedding is None:
            return None
        if embeddings is None:
            embeddings = self.embed(texts, sections)
        own = _check_embeddings(embeddings, len(texts), self.embedding)
        return self.embedding.matrix(own, context)

    def predict(
        self,
        texts: Sequence[str],
        tokens: Sequence[Sequence[str]] | None = None,
        sections: Sequence[str] | None = None,
        embeddings: np.ndarray | None = None,
        text_logits: np.ndarray | None = None,
        documents: Sequence[Hashable] | None = None,
    ) -> list[TopicPrediction]:
        """Predict the topic of each paragraph.

        Args:
            texts: Paragraphs; a single string is treated as a batch of one.
            tokens: Their word segmentation (`nlp.segment.segment_texts`) when already known,
                so that an indexer does not segment twice; otherwise texts are segmented here.
            sections: Their section headings (`Passage.section`), an extra feature; "" for none.
            embeddings: Their passage vectors, float32 (len(texts), dim), when already known
                (an indexer passes its own when its `Embedder.fingerprint` equals
                `embedding_fingerprint`); otherwise the model embeds the texts itself when it
                reads embeddings. Ignored by a TF-IDF-only model.
            text_logits: `text_logits(texts, tokens, sections, within_documents=documents is
                not None)` when already computed elsewhere (the indexer's segmenting
                processes); computed here when None.
            documents: The document of each text (any hashable key), when the texts are whole
                documents (the indexer's batches). A paragraph that only lists figures is then
                read in the light of the report it is part of: the model's `context_model`
                head reads the mean passage vector of the document's texts beside the text's
                own; a model without that head adds `DOCUMENT_WEIGHT` times the mean logits of
                the document's texts to each text's.

        Returns:
            One prediction per text, with a probability for every label; they sum to 1.

        Raises:
            InvalidInputError: `tokens`, `sections` or `embeddings` do not match `texts`.
            ModelError: The embedding model the classifier needs cannot be loaded.
        """
        if isinstance(texts, str):
            texts = [texts]
        if text_logits is None:  # the words and characters are read here: normalise them
            texts = [normalize_text(text) for text in texts]
        if self.restorer is not None and tokens is None and embeddings is None:
            texts = [self._with_diacritics(text) for text in texts]
            if sections is not None:
                sections = [self._with_diacritics(section) for section in sections]
        if self.embedding is not None and embeddings is not None:
            _check_embeddings(embeddings, len(texts), self.embedding)
        if not texts:
            return []
        if tokens is None:
            from nlp.segment import segment_texts  # lazy: loads underthesea

            tokens = segment_texts(texts)
        if sections is None:
            sections = [""] * len(texts)
        for name, given in (("tokens", tokens), ("sections", sections)):
            if len(given) != len(texts):
                raise InvalidInputError(
                    f"{len(given)} {name} for {len(texts)} texts; pass one entry per text "
                    "(an empty list or string where there is none)"
                )
        head, context = self, None
        if documents is not None and self.context_model is not None:
            head = self.context_model
            if embeddings is None:
                embeddings = self.embed(texts, sections)
            vectors = _check_embeddings(embeddings, len(texts), head.embedding)
            context = document_means(vectors, documents)[0].astype(np.float32)
        logits = head.decision_function(texts, tokens, sections, embeddings, text_logits, context)
        if documents is not None and head is self:
            # Without a head that reads documents, their mean logits stand in for it.
            logits = with_document_context(logits, documents)
        predictions = []
        for row in _softmax(logits):
            scores = {label: float(p) for label, p in zip(self.labels, row, strict=True)}
            predictions.append(TopicPrediction(self.labels[int(row.argmax())], scores))
        return predictions

    def _with_diacritics(self, text: str) -> str:
        """`text` with its diacritics restored when it was typed without any (three words or
        more and not one diacritic: Vietnamese prose always has some)."""
        if self.restorer is None or has_diacritics(text) or len(_WORDS.findall(text)) < 3:
            return text
        return normalize_text(self.restorer.restore_text(text))

    # ----------------------------------------------------------------------- persistence

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write the model as JSON and `.npy` files plus a manifest, replacing `directory`.

        The folder is written beside the target and swapped in, so a crash leaves the previous
        model readable.

        Args:
            directory: The model folder to create or replace.
        """
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            self._write(staging, {})
            os.chmod(staging, 0o755)
            previous = None
            if target.exists():
                previous = target.with_name(f".{target.name}.old-{os.getpid()}")
                os.replace(target, previous)
            os.replace(staging, target)
            if previous is not None:
                shutil.rmtree(previous, ignore_errors=True)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def _write(self, folder: Path, shared: dict[str, FeatureBlock]) -> None:
        """Write the model's files into `folder`, the manifest last. A block equal to the
        same-named block of `shared` (the first head's, seen from the second head's folder) is
        not written again: the manifest names the first head's files."""
        import sklearn

        folder.mkdir(exist_ok=True)
        features = []
        for block in self.blocks:
            vocabulary_file = f"vocabulary_{block.name}.json"
            idf_file = f"idf_{block.name}.npy"
            if _same_block(block, shared.get(block.name)):
                vocabulary_file, idf_file = f"../{vocabulary_file}", f"../{idf_file}"
            else:
                (folder / vocabulary_file).write_text(
                    json.dumps(block.vocabulary, ensure_ascii=False), encoding="utf-8"
                )
                np.save(folder / idf_file, block.idf.astype(np.float32), allow_pickle=False)
            features.append(
                {
                    "name": block.name,
                    "analyzer": block.analyzer,
                    "ngram_range": list(block.ngram_range),
                    "weight": block.weight,
                    "size": len(block.vocabulary),
                    "vocabulary": vocabulary_file,
                    "idf": idf_file,
                }
            )
        np.save(folder / "coef.npy", self.coef, allow_pickle=False)
        np.save(folder / "intercept.npy", self.intercept, allow_pickle=False)
        embedding = None
        if self.embedding is not None:
            embedding = {
                "model": self.embedding.model,
                "fingerprint": self.embedding.fingerprint,
                "dim": self.embedding.dim,
                "weight": self.embedding.weight,
                "context": self.embedding.context,
                "input": PASSAGE_INPUT,  # embed_under_headings(embedder, texts, sections)
                "max_length": EMBEDDING_MAX_LENGTH,
            }
        manifest = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "labels": list(self.labels),
            "temperature": self.temperature,
            "features": features,
            "embedding": embedding,
            "embedding_model": self.embedding_model,
            "embedding_fingerprint": self.embedding_fingerprint,
            "context_model": CONTEXT_MODEL_DIR if self.context_model is not None else None,
            "restore": RESTORE_FILE if self.restorer is not None else None,
            "sklearn_version": sklearn.__version__,
            "numpy_version": np.__version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "training": self.info,
        }
        if self.restorer is not None:
            self.restorer.save(folder / RESTORE_FILE)
        if self.context_model is not None:
            self.context_model._write(
                folder / CONTEXT_MODEL_DIR, {block.name: block for block in self.blocks}
            )
        # The manifest goes last: a folder without one is never taken for a model.
        (folder / MANIFEST_NAME).write_text(
            json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8"
        )

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> TopicClassifier:
        """Load a model folder written by `save`.

        Args:
            directory: The model folder.

        Returns:
            The classifier. A model with a dense block loads its embedder only when `predict`
            first needs it.

        Raises:
            ModelError: The folder is missing, incomplete, damaged or of another format
                version; the message says how to rebuild it.
        """
        return cls._load(Path(directory), {})

    @classmethod
    def _load(cls, folder: Path, known: dict[Path, FeatureBlock]) -> TopicClassifier:
        """`load`; `known` maps block files already read (by the first head) to their block."""
        manifest_path = folder / MANIFEST_NAME
        if not manifest_path.is_file():
            raise ModelError(f"{folder}: no topic model here (no {MANIFEST_NAME}); {_TRAIN_HINT}")
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            if manifest.get("format") != FORMAT_NAME:
                raise ValueError(f"format is {manifest.get('format')!r}, not {FORMAT_NAME!r}")
            if manifest.get("format_version") not in READABLE_FORMAT_VERSIONS:
                raise ValueError(
                    f"format version {manifest.get('format_version')} is not one of "
                    f"{READABLE_FORMAT_VERSIONS}"
                )
            labels = manifest["labels"]
            if sorted(labels) != sorted(TOPICS):
                raise ValueError(f"labels {labels} are not {list(TOPICS)}")
            # Blocks read from the same files (the second head naming the first head's) are
            # one object, with one cache of word n-gram ids.
            blocks = []
            for spec in manifest["features"]:
                vocabulary_path = _model_file(folder, spec["vocabulary"])
                block = known.get(vocabulary_path)
                if block is None or block.name != spec["name"]:
                    block = _read_block(spec, vocabulary_path, _model_file(folder, spec["idf"]))
                    known[vocabulary_path] = block
                blocks.append(block)
            embedding = None
            if manifest.get("embedding"):
                spec = manifest["embedding"]
                if spec.get("input") != PASSAGE_INPUT:
                    raise ModelError(
                        f"the topic model at {folder} was trained on embeddings of "
                        f"{spec.get('input')!r} input, not {PASSAGE_INPUT!r}; retrain it: "
                        + _TRAIN_HINT
                    )
                embedding = EmbeddingBlock(
                    model=str(spec["model"]),
                    fingerprint=str(spec["fingerprint"]),
                    dim=int(spec["dim"]),
                    weight=float(spec["weight"]),
                    context=float(spec.get("context", 0.0)),
                )
            coef = np.load(folder / "coef.npy", allow_pickle=False)
            intercept = np.load(folder / "intercept.npy", allow_pickle=False)
            temperature = float(manifest["temperature"])
            if not math.isfinite(temperature) or temperature <= 0:
                raise ValueError(f"temperature {temperature} is not a positive number")
        except ModelError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{folder}: damaged topic model ({exc}); {_TRAIN_HINT}") from None
        model = cls(
            blocks, coef, intercept, labels, temperature, manifest.get("training"), embedding
        )
        if manifest.get("context_model"):
            model.context_model = cls._load(folder / str(manifest["context_model"]), known)
            if model.context_model.embedding_fingerprint != model.embedding_fingerprint:
                raise ModelError(f"{folder}: its heads read different embeddings; {_TRAIN_HINT}")
        if manifest.get("restore"):
            try:
                model.restorer = DiacriticRestorer.load(_model_file(folder, manifest["restore"]))
            except (OSError, ValueError) as exc:
                raise ModelError(f"{folder}: damaged topic model ({exc}); {_TRAIN_HINT}") from None
        model.source = str(folder.resolve())
        return model

    @classmethod
    def load_default(cls) -> TopicClassifier:
        """Return the model shipped in `models/topic_model/`, loaded once per process.

        Raises:
            ModelError: The shipped model is missing or damaged.
        """
        return _load_default()


def _same_block(block: FeatureBlock, other: FeatureBlock | None) -> bool:
    return other is not None and (
        block is other
        or (
            (block.name, block.analyzer, tuple(block.ngram_range), block.weight)
            == (other.name, other.analyzer, tuple(other.ngram_range), other.weight)
            and block.vocabulary == other.vocabulary
            and np.array_equal(block.idf, other.idf)
        )
    )


def _model_file(folder: Path, name: object) -> Path:
    """A file named in a model manifest: in `folder`, or (`../NAME`, a second head naming the
    first head's file) in the folder above it."""
    if not isinstance(name, str) or not re.fullmatch(r"(\.\./)?[\w.-]+", name):
        raise ValueError(f"bad file name {name!r} in the manifest")
    return (folder / name).resolve()


def _read_block(spec: dict[str, Any], vocabulary_path: Path, idf_path: Path) -> FeatureBlock:
    vocabulary = json.loads(vocabulary_path.read_text(encoding="utf-8"))
    idf = np.load(idf_path, allow_pickle=False)
    if len(vocabulary) != spec["size"] or idf.shape != (spec["size"],):
        raise ValueError(f"feature block {spec['name']} has inconsistent sizes")
    return FeatureBlock(
        name=spec["name"],
        analyzer=spec["analyzer"],
        ngram_range=tuple(spec["ngram_range"]),
        weight=float(spec["weight"]),
        vocabulary=vocabulary,
        idf=idf,
    )


@cache
def _load_default() -> TopicClassifier:
    return TopicClassifier.load(DEFAULT_MODEL_DIR)


_EMBEDDERS: dict[str, Embedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


def predict_within_documents(
    classifier: TopicClassifier,
    texts: Sequence[str],
    sections: Sequence[str],
    files: Sequence[str | None],
    corpus_dir: str | os.PathLike[str],
    *,
    headings: bool = True,
) -> tuple[list[TopicPrediction], int]:
    """Classify paragraphs as `vnsearch index` tags them, where their document is at hand.

    A text whose file (a path under `corpus_dir`, e.g. `party/x.md`) can be read is classified
    beside all the other paragraphs of that document (`predict(documents=...)`) and, when its
    section is empty and `headings` is set, under the heading of the paragraph with the same
    text there (`markup_free`: Markdown marks aside). Every other text is classified alone, as
    given.

    Args:
        classifier: The topic model.
        texts: Paragraphs.
        sections: Their headings ("" for none).
        files: Each text's document under `corpus_dir`, or None.
        corpus_dir: The corpus folder (`shared/corpus`).
        headings: Give a text without a section the heading of its paragraph in the file.

    Returns:
        One prediction per text, in order, and how many texts were read within their document.

    Raises:
        InvalidInputError: `sections` or `files` do not have one entry per text.
    """
    if not len(texts) == len(sections) == len(files):
        raise InvalidInputError(
            f"{len(texts)} texts, {len(sections)} sections and {len(files)} files: pass one "
            "of each per text"
        )
    corpus = Path(corpus_dir).resolve()
    texts, sections = list(texts), list(sections)
    count = len(texts)
    keys: list[str | None] = [None] * count  # None: read alone
    members: dict[str, list[int]] = {}
    for n, file in enumerate(files):
        if file:
            members.setdefault(file, []).append(n)
    for file, rows in members.items():
        if not (corpus / file).resolve().is_relative_to(corpus):
            continue  # outside the corpus: read alone
        try:
            passages = _document_passages(corpus, file)
        except DocumentReadError:  # not a readable file of the corpus: read alone
            continue
        given = {n: markup_free(texts[n]) for n in rows}
        passage_keys = [markup_free(passage.text) for passage in passages]
        found = {key: passage.section for key, passage in zip(passage_keys, passages, strict=True)}
        for n in rows:
            keys[n] = file
            if headings and not sections[n]:
                sections[n] = normalize_text(found.get(given[n], ""))
        # The document's other paragraphs join the batch; the given texts stand for theirs.
        labelled = set(given.values())
        for key, passage in zip(passage_keys, passages, strict=True):
            if key not in labelled:
                texts.append(passage.text)
                sections.append(passage.section)
                keys.append(file)
    predictions: list[TopicPrediction | None] = [None] * len(texts)
    alone = [n for n in range(count) if keys[n] is None]
    within = [n for n, key in enumerate(keys) if key is not None]
    for rows, documents in ((alone, None), (within, [keys[n] for n in within])):
        if rows:
            found_predictions = classifier.predict(
                [texts[n] for n in rows], sections=[sections[n] for n in rows], documents=documents
            )
            for n, prediction in zip(rows, found_predictions, strict=True):
                predictions[n] = prediction
    return predictions[:count], count - len(alone)


def shared_embedder(model: str | None = None) -> Embedder:
    """Return the int8 ONNX `Embedder` of `model` that classifiers use, loaded once per process.

    Args:
        model: An embedding model name or folder; None or the default name is the bundled
            multilingual-e5-small.

    Returns:
        An `Embedder(model, backend="onnx", max_length=EMBEDDING_MAX_LENGTH)`.

    Raises:
        ModelError: The model cannot be found or loaded.
    """
    from models.e5_build import MODEL_NAME  # lazy: importing this module loads no model
    from models.embedder import Embedder

    key = model or MODEL_NAME
    with _EMBEDDERS_LOCK:
        if key not in _EMBEDDERS:
            _EMBEDDERS[key] = Embedder(
                None if key == MODEL_NAME else key,
                backend="onnx",
                max_length=EMBEDDING_MAX_LENGTH,
            )
        return _EMBEDDERS[key]


def _check_embeddings(embeddings: Any, count: int, block: EmbeddingBlock) -> np.ndarray:
    """Return `embeddings` as float32 if they fit `count` texts and the dense block."""
    array = np.asarray(embeddings, dtype=np.float32)
    if array.shape != (count, block.dim):
        raise InvalidInputError(
            f"embeddings have shape {array.shape}, expected ({count}, {block.dim}): pass one "
            f"passage vector per text from {block.model} (fingerprint {block.fingerprint}), "
            "or none to let the classifier embed the texts"
        )
    if not np.isfinite(array).all():
        raise InvalidInputError("embeddings hold NaN or infinite values; re-embed the texts")
    return array


# --------------------------------------------------------------------------- training


def _features(
    blocks: Sequence[FeatureBlock],
    texts: Sequence[str],
    tokens: Sequence[Sequence[str]],
    sections: Sequence[str],
    dense: np.ndarray | None = None,
) -> Any:
    from scipy.sparse import csr_matrix, hstack

    parts = [
        block.transform(_block_documents(block.name, texts, tokens, sections)) for block in blocks
    ]
    if dense is not None:
        parts.append(csr_matrix(dense, dtype=np.float32))
    return hstack(parts, format="csr", dtype=np.float32)


def _fit_blocks(
    specs: Sequence[FeatureSpec],
    texts: Sequence[str],
    tokens: Sequence[Sequence[str]],
    sections: Sequence[str],
) -> list[FeatureBlock]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    blocks = []
    for spec in specs:
        documents = _block_documents(spec.name, texts, tokens, sections)
        if not any(documents):
            continue  # e.g. no example has a section heading
        vectorizer = TfidfVectorizer(
            analyzer=spec.analyzer,
            ngram_range=spec.ngram_range,
            min_df=min(spec.min_df, max(1, len(texts) // 20)),
            max_features=spec.max_features,
            token_pattern=r"\S+" if spec.analyzer == "word" else None,
            lowercase=False,
            sublinear_tf=True,
            dtype=np.float32,
        )
        try:
            vectorizer.fit(documents)
        except ValueError as exc:  # an empty vocabulary leaves nothing to learn in this block
            if "empty vocabulary" in str(exc) or "no terms remain" in str(exc):
                continue
            raise
        vocabulary = sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.__getitem__)
        blocks.append(
            FeatureBlock(
                name=spec.name,
                analyzer=spec.analyzer,
                ngram_range=spec.ngram_range,
                weight=spec.weight,
                vocabulary=vocabulary,
                idf=vectorizer.idf_.astype(np.float32),
            )
        )
    return blocks


def _fit_linear(
    blocks: Sequence[FeatureBlock],
    rows: _TrainingRows,
    c: float,
    embedding: EmbeddingBlock | None = None,
    own: np.ndarray | None = None,
    context: np.ndarray | None = None,
) -> TopicClassifier:
    """Fit the logistic regression on `rows`; `own` and `context` are their passage and
    document vectors, as `EmbeddingBlock.matrix` reads them."""
    from sklearn.linear_model import LogisticRegression

    dense = embedding.matrix(own, context) if embedding is not None and own is not None else None
    matrix = _features(blocks, rows.texts, rows.tokens, rows.sections, dense)
    targets = np.array([TOPICS.index(label) for label in rows.labels])
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
    model.fit(matrix, targets)
    coef = np.zeros((len(TOPICS), matrix.shape[1]), dtype=np.float32)
    # A label absent from these examples (a small cross-validation fold) is never predicted.
    intercept = np.full(len(TOPICS), model.intercept_.min() - 20.0, dtype=np.float32)
    if len(model.classes_) == 2:  # binary: one weight row, for the second class
        coef[model.classes_[1]] = model.coef_[0]
        intercept[model.classes_] = (0.0, model.intercept_[0])
    else:
        coef[model.classes_] = model.coef_
        intercept[model.classes_] = model.intercept_
    return TopicClassifier(blocks, coef, intercept, embedding=embedding)


def _fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """Return the temperature that minimises the log-loss of held-out logits."""
    from scipy.optimize import minimize_scalar

    def log_loss(log_t: float) -> float:
        scaled = logits / math.exp(log_t)
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(scaled).sum(axis=1))
        return float(np.mean(log_norm - scaled[np.arange(len(targets)), targets]))

    result = minimize_scalar(log_loss, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(result.x))


def train_classifier(
    examples: Sequence[LabelledExample],
    *,
    tokens: Sequence[Sequence[str]] | None = None,
    embeddings: np.ndarray | None = None,
    embedder: Embedder | None = None,
    embedding_weight: float = DEFAULT_EMBEDDING_WEIGHT,
    contexts: np.ndarray | None = None,
    context_weight: float = DEFAULT_CONTEXT_WEIGHT,
    c: float = 10.0,
    features: Sequence[FeatureSpec] = DEFAULT_FEATURES,
    calibration_folds: int = 4,
    workers: int = 1,
    seed: int = 0,
) -> TopicClassifier:
    """Train a topic classifier.

    Args:
        examples: Labelled paragraphs; every label of `TOPICS` must occur.
        tokens: Their word segmentation when already known; otherwise they are segmented here.
        embeddings: Their passage embeddings (`embedder.embed_passages` of the normalised
            texts) when already known; otherwise they are computed here.
        embedder: The embedder of the dense block (it names the model and fingerprint in the
            saved model, and embeds when `embeddings` is None); default `shared_embedder()`,
            the int8 ONNX multilingual-e5-small.
        embedding_weight: Scale of the embeddings beside the TF-IDF blocks; 0 trains a
            TF-IDF-only model that never loads an embedder.
        contexts: The mean passage vector of each example's document (`document_contexts`:
            all its paragraphs, as the indexer reads them), to train a second head that reads
            paragraphs within their documents (`TopicClassifier.context_model`, used by
            `predict(documents=...)`). None trains the first head alone.
        context_weight: Scale of the document vector beside the paragraph's own in that head;
            0 trains no second head.
        c: Inverse regularisation strength of the logistic regression.
        features: The feature blocks to build.
        calibration_folds: Folds of documents held out to fit the softmax temperature; 0 or
            fewer than that many documents keeps the temperature at 1.
        workers: Processes for word segmentation (0: every core).
        seed: Seed of the calibration folds.

    Returns:
        The trained classifier.

    Raises:
        InvalidInputError: There are no examples, a label is missing, `tokens` or `embeddings`
            do not match `examples`, or `embedding_weight` is negative.
        ModelError: The embedder cannot be loaded.
    """
    if not examples:
        raise InvalidInputError("no training examples; pass labelled paragraphs")
    labels = [example.label for example in examples]
    missing = [label for label in TOPICS if label not in labels]
    unknown = sorted(set(labels) - set(TOPICS))
    if missing or unknown:
        raise InvalidInputError(
            f"training labels must cover exactly {', '.join(TOPICS)}; "
            f"missing: {missing or 'none'}, unknown: {unknown or 'none'}"
        )
    texts = [normalize_text(example.text) for example in examples]
    if tokens is None:
        from nlp.segment import segment_texts

        tokens = segment_texts(texts, workers=workers)
    elif len(tokens) != len(texts):
        raise InvalidInputError(f"{len(tokens)} token lists for {len(texts)} examples")
    sections = [example.section for example in examples]
    if not (embedding_weight >= 0 and math.isfinite(embedding_weight)):
        raise InvalidInputError(
            f"embedding_weight must be 0 (TF-IDF only) or positive, not {embedding_weight}"
        )
    if not (context_weight >= 0 and math.isfinite(context_weight)):
        raise InvalidInputError(f"context_weight must be 0 or positive, not {context_weight}")
    embedding = None
    own = context = None
    if embedding_weight > 0:
        embedder = embedder or shared_embedder()
        if embeddings is None:
            embeddings = example_vectors(examples, embedder)
        embedding = EmbeddingBlock(
            embedder.name, embedder.fingerprint, embedder.dim, float(embedding_weight)
        )
        own = _check_embeddings(embeddings, len(texts), embedding)
        if contexts is not None and context_weight > 0:
            context = _check_embeddings(contexts, len(texts), embedding)

    blocks = _fit_blocks(features, texts, tokens, sections)
    if not blocks:
        raise InvalidInputError("the examples yield no features; give paragraphs with words")
    rows = _TrainingRows(texts, tokens, sections, labels, [e.group for e in examples])
    settings = (features, c, calibration_folds, seed)
    classifier = _fit_head(blocks, rows, settings, embedding, own)
    classifier.restorer = DiacriticRestorer.build(tokens)
    if context is not None and embedding is not None:
        # The second head: the same examples, each read within its document.
        within = replace(embedding, context=float(context_weight))
        classifier.context_model = _fit_head(blocks, rows, settings, within, own, context)
    classifier.info = {
        "n_examples": len(examples),
        "n_documents": len(set(rows.groups)),
        "per_label": dict(Counter(labels)),
        "per_source": dict(Counter(example.source or "given" for example in examples)),
        "with_section": sum(bool(section) for section in sections),
        "c": c,
        "embedding_weight": embedding.weight if embedding is not None else 0.0,
        "context_weight": float(context_weight) if classifier.context_model else 0.0,
        "calibration_folds": calibration_folds,
        "features": [
            {"name": s.name, "ngram_range": list(s.ngram_range), "weight": s.weight}
            for s in features
        ],
    }
    return classifier


@dataclass(frozen=True)
class _TrainingRows:
    """The normalised examples as the feature blocks read them, and their documents."""

    texts: Sequence[str]
    tokens: Sequence[Sequence[str]]
    sections: Sequence[str]
    labels: Sequence[str]
    groups: Sequence[str]

    def subset(self, indices: Sequence[int]) -> _TrainingRows:
        """The rows at `indices`, in that order."""
        return _TrainingRows(
            *(
                [column[i] for i in indices]
                for column in (self.texts, self.tokens, self.sections, self.labels, self.groups)
            )
        )


def _vectors_at(indices: np.ndarray, *vectors: np.ndarray | None) -> tuple[np.ndarray | None, ...]:
    """The rows at `indices` of each array of vectors (None stays None)."""
    return tuple(None if array is None else array[indices] for array in vectors)


def _fit_head(
    blocks: Sequence[FeatureBlock],
    rows: _TrainingRows,
    settings: tuple[Sequence[FeatureSpec], float, int, int],
    embedding: EmbeddingBlock | None,
    own: np.ndarray | None,
    context: np.ndarray | None = None,
) -> TopicClassifier:
    """Fit one head on `rows` (settings: features, c, calibration folds, seed), then its
    temperature on documents held out from models of the same kind. `own` and `context` are
    the rows' passage and document vectors, as `EmbeddingBlock.matrix` reads them."""
    features, c, calibration_folds, seed = settings
    head = _fit_linear(blocks, rows, c, embedding, own, context)
    if calibration_folds < 2 or len(set(rows.groups)) < calibration_folds:
        return head
    from sklearn.model_selection import GroupKFold

    targets = np.array([TOPICS.index(label) for label in rows.labels])
    logits = np.zeros((len(rows.texts), len(TOPICS)), dtype=np.float64)
    splitter = GroupKFold(n_splits=calibration_folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(rows.texts, targets, rows.groups):
        fold = rows.subset(train)
        fold_blocks = _fit_blocks(features, fold.texts, fold.tokens, fold.sections)
        model = _fit_linear(fold_blocks, fold, c, embedding, *_vectors_at(train, own, context))
        held = rows.subset(test)
        held_own, held_context = _vectors_at(test, own, context)
        logits[test] = model.decision_function(
            held.texts, held.tokens, held.sections, held_own, context=held_context
        )
    head.temperature = _fit_temperature(logits, targets)
    return head
