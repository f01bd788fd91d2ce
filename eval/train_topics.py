"""Rebuild the shipped topic model and report grouped cross-validation and transfer scores.

Usage (from the repository root):

    python -m eval.train_topics                   # cross-validate, then write models/topic_model/
    python -m eval.train_topics --mode transfer   # train on one label source, test on the other
    python -m eval.train_topics --mode documents  # CV with paragraphs read within their document
    python -m eval.train_topics --mode all --baseline --embedding-cache /tmp/vnsearch-emb

Cross-validation holds out whole documents (every paragraph of a file is on one side), in two
protocols: folds over the dev documents with the other sources added to training folds only
(scores on dev rows), and folds over all documents (scores on all rows, per source). The fold
models are scored with and without the section heading feature, and every number is the mean
over the `--seeds` fold assignments (per-seed values are printed beside it). The transfer mode
trains on the dev labels (plus the report headings) and tests on this project's labels from
documents that have no dev row, then the other way round, so that no number comes from a
single split or from training data. `--baseline` runs the same protocols for the TF-IDF-only
model (`--embedding-weight 0`), for a before/after comparison in one run. These protocols score
paragraphs read alone, by the model's first head.

The documents mode scores the dev rows as the indexer tags them: each fold model also reads
every paragraph of its held-out documents, and each labelled paragraph is classified by the
head that reads paragraphs within their documents (its document's mean passage vector,
`--context-weight`), plus each document weight times its document's mean logits.

The training paragraphs are embedded once (the int8 ONNX multilingual-e5-small, as the
classifier itself does) and the vectors reused by every fold; `--embedding-cache DIR` keeps them
on disk between runs, keyed by the embedder's fingerprint and the texts.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from eval.classify import evaluate, grouped_cross_validation, plot_confusion  # noqa: E402
from models.topics import (  # noqa: E402
    DEFAULT_CONTEXT_WEIGHT,
    DEFAULT_EMBEDDING_WEIGHT,
    DEFAULT_LABELS_PATH,
    DEFAULT_MODEL_DIR,
    DEFAULT_SHARED_DIR,
    SOURCE_DEV,
    SOURCE_OWN,
    SOURCE_REPORT,
    TOPICS,
    LabelledExample,
    default_training_examples,
    document_contexts,
    document_means,
    shared_embedder,
    train_classifier,
)

TRANSFER_SPLITS = ("dev+report -> own", "own -> dev")


@dataclass
class TrainingSet:
    """What every protocol reads: the examples, their tokens and embeddings, training options."""

    examples: Sequence[LabelledExample]
    tokens: Sequence[Sequence[str]]
    embeddings: np.ndarray | None
    options: dict[str, Any]
    contexts: np.ndarray | None = None  # each example's document vector (document_contexts)

    def context_of(self, rows: Sequence[int]) -> dict[str, Any]:
        """`train_classifier` keyword arguments with the document vectors of `rows`, if any."""
        return {} if self.contexts is None else {"contexts": self.contexts[rows]}

    def unpack(self) -> tuple[Any, Any, Any, dict[str, Any]]:
        """Return (examples, tokens, embeddings, options)."""
        return self.examples, self.tokens, self.embeddings, self.options


def _table(title: str, result: dict[str, Any]) -> str:
    lines = [
        f"{title}: n={result['n']}  accuracy={result['accuracy']:.3f}  "
        f"macro-F1={result['macro_f1']:.3f}"
        + (f"  log-loss={result['log_loss']:.3f}" if "log_loss" in result else "")
        + (f"  ECE={result['ece']:.3f}" if "ece" in result else ""),
        f"  {'label':<18} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}",
    ]
    for label, row in result["per_class"].items():
        lines.append(
            f"  {label:<18} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} "
            f"{row['support']:>8d}"
        )
    if "per_seed_macro_f1" in result:
        seeds = ", ".join(f"{value:.3f}" for value in result["per_seed_macro_f1"])
        lines.append(f"  macro-F1 per seed: {seeds}")
    return "\n".join(lines)


def _confusion(result: dict[str, Any]) -> str:
    labels = result["confusion"]["labels"]
    short = [label[:7] for label in labels]
    lines = ["  gold \\ predicted " + " ".join(f"{name:>7}" for name in short)]
    for label, row in zip(labels, result["confusion"]["matrix"], strict=True):
        lines.append(f"  {label:<17} " + " ".join(f"{value:>7d}" for value in row))
    return "\n".join(lines)


def _summary(examples: Sequence[LabelledExample]) -> str:
    counts = Counter((example.source, example.label) for example in examples)
    sources = sorted({example.source for example in examples})
    lines = ["training examples by source and label:"]
    lines.append(f"  {'source':<8} " + " ".join(f"{label[:7]:>7}" for label in TOPICS) + "   total")
    for source in sources:
        row = [counts[(source, label)] for label in TOPICS]
        lines.append(f"  {source:<8} " + " ".join(f"{v:>7d}" for v in row) + f" {sum(row):>7d}")
    documents = len({example.group for example in examples})
    lines.append(f"  {len(examples)} examples from {documents} documents")
    return "\n".join(lines)


def _segment(examples: Sequence[LabelledExample], workers: int) -> list[list[str]]:
    from nlp.segment import segment_texts

    return segment_texts([example.text for example in examples], workers=workers)


def _embed(examples: Sequence[LabelledExample], embedder: Any, cache: Path | None) -> np.ndarray:
    """Embed the examples as the index does (each under its innermost heading), reusing a
    cached array of the same embedder and inputs."""
    from models.embedder import passage_input

    texts = [passage_input(example.text, example.section) for example in examples]
    key = hashlib.sha1("\0".join(texts).encode("utf-8")).hexdigest()[:16]
    path = cache / f"topics-{embedder.fingerprint}-{key}.npy" if cache else None
    if path is not None and path.is_file():
        vectors = np.load(path, allow_pickle=False)
        if vectors.shape == (len(texts), embedder.dim):
            return vectors
    vectors = embedder.embed_passages(texts)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.npy")
        np.save(staging, vectors, allow_pickle=False)
        os.replace(staging, path)
    return vectors


def _agreement(shared: Path) -> dict[str, str]:
    """Map each dev row's normalised text to its `agreement` (high / low)."""
    import json

    from nlp.normalize import normalize_text

    agreement = {}
    with (shared / "labels" / "topics-dev.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                agreement[normalize_text(row["text"])] = str(row.get("agreement", ""))
    return agreement


def _subset(result: dict[str, Any], rows: Sequence[LabelledExample], keep: Sequence[int]) -> Any:
    from eval.classify import classification_metrics

    return classification_metrics(
        [rows[i].label for i in keep], [result["predictions"][i] for i in keep]
    )


def _mean_metrics(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Average metric dicts of several seeds; confusion matrices are summed."""
    first = results[0]

    def mean(values: Sequence[float]) -> float:
        return float(np.mean(values))

    merged: dict[str, Any] = {
        "n": first["n"],
        "accuracy": mean([r["accuracy"] for r in results]),
        "macro_f1": mean([r["macro_f1"] for r in results]),
        "per_seed_macro_f1": [r["macro_f1"] for r in results],
        "per_class": {
            label: {
                "precision": mean([r["per_class"][label]["precision"] for r in results]),
                "recall": mean([r["per_class"][label]["recall"] for r in results]),
                "f1": mean([r["per_class"][label]["f1"] for r in results]),
                "support": row["support"],
            }
            for label, row in first["per_class"].items()
        },
        "confusion": {
            "labels": first["confusion"]["labels"],
            "matrix": np.sum([r["confusion"]["matrix"] for r in results], axis=0).tolist(),
        },
    }
    for key in ("log_loss", "ece"):
        if key in first:
            merged[key] = mean([r[key] for r in results])
    if "by_source" in first:
        merged["by_source"] = {
            source: _mean_metrics([r["by_source"][source] for r in results])
            for source in first["by_source"]
        }
    return merged


def _rounded(result: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"macro_f1": round(result["macro_f1"], 4)}
    if "per_seed_macro_f1" in result:
        summary["macro_f1_per_seed"] = [round(v, 4) for v in result["per_seed_macro_f1"]]
    summary["accuracy"] = round(result["accuracy"], 4)
    summary["per_class_f1"] = {k: round(v["f1"], 4) for k, v in result["per_class"].items()}
    for key in ("log_loss", "ece"):
        if key in result:
            summary[key] = round(result[key], 4)
    return summary


def run_cross_validation(data: TrainingSet, args: argparse.Namespace) -> dict[str, Any]:
    """Print both grouped CV protocols, averaged over seeds; return a summary for the manifest.

    Dev protocol: folds split the dev rows by document; the other sources join each training
    fold unless their document is held out; only dev rows are scored (all of them, and those
    both readers were confident about). All-rows protocol: folds split every row by document and
    every row is scored, per source as well. The fold models are scored with and without
    section headings.
    """
    examples, tokens, embeddings, options = data.unpack()
    agreement = _agreement(args.shared)
    dev = [i for i, e in enumerate(examples) if e.source == SOURCE_DEV]
    extra = [i for i, e in enumerate(examples) if e.source != SOURCE_DEV]
    dev_rows = [examples[i] for i in dev]
    high = [k for k, e in enumerate(dev_rows) if agreement.get(e.text) == "high"]
    pick = (lambda rows: embeddings[rows]) if embeddings is not None else (lambda rows: None)

    runs: dict[str, list[dict[str, Any]]] = {}
    started = time.perf_counter()
    for seed in args.seeds:
        dev_run = grouped_cross_validation(
            dev_rows,
            folds=args.folds,
            seed=seed,
            extra=[examples[i] for i in extra],
            tokens=[tokens[i] for i in dev],
            extra_tokens=[tokens[i] for i in extra],
            embeddings=pick(dev),
            extra_embeddings=pick(extra),
            score_text_only=True,
            train_options=options,
        )
        all_run = grouped_cross_validation(
            examples,
            folds=args.folds,
            seed=seed,
            tokens=tokens,
            embeddings=embeddings,
            score_text_only=True,
            train_options=options,
        )
        for key, result in (
            ("dev_protocol", dev_run),
            ("dev_protocol_text_only", dev_run["text_only"]),
            ("all_rows", all_run),
            ("all_rows_text_only", all_run["text_only"]),
        ):
            runs.setdefault(key, []).append(result)
            if key.startswith("dev"):
                runs.setdefault(f"{key}_high", []).append(_subset(result, dev_rows, high))
        print(f"  CV seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)

    summary: dict[str, Any] = {"folds": args.folds, "seeds": list(args.seeds)}
    for key in ("dev_protocol", "dev_protocol_text_only"):
        heading = "with section headings" if key == "dev_protocol" else "text only (no headings)"
        result, confident = _mean_metrics(runs[key]), _mean_metrics(runs[f"{key}_high"])
        print(
            f"\n=== dev protocol: {args.folds}-fold CV over dev documents, other sources train "
            f"only, {heading}, mean of seeds {args.seeds} ==="
        )
        print(_table("held-out dev rows", result))
        print(_table("held-out dev rows with agreement=high", confident))
        if key == "dev_protocol":
            print("\nconfusion matrix, held-out dev rows (summed over seeds):")
            print(_confusion(result))
            summary["plot_source"] = result
        summary[key] = {
            **_rounded(result),
            "macro_f1_high_agreement": round(confident["macro_f1"], 4),
        }
    for key in ("all_rows", "all_rows_text_only"):
        heading = "with section headings" if key == "all_rows" else "text only (no headings)"
        result = _mean_metrics(runs[key])
        print(
            f"\n=== all-rows protocol: {args.folds}-fold CV over all documents, {heading}, "
            f"mean of seeds {args.seeds} ==="
        )
        print(_table("all held-out rows", result))
        for source, subset in result["by_source"].items():
            print(_table(f"held-out rows from source '{source}'", subset))
        summary[key] = {
            **_rounded(result),
            "by_source_macro_f1": {
                k: round(v["macro_f1"], 4) for k, v in result["by_source"].items()
            },
        }
    return summary


def run_transfer(data: TrainingSet, args: argparse.Namespace) -> dict[str, Any]:
    """Train on one label source and test on the other, on documents the model never saw."""
    examples, tokens, embeddings, options = data.unpack()
    dev_documents = {e.group for e in examples if e.source in (SOURCE_DEV, SOURCE_REPORT)}
    own_elsewhere = [
        i for i, e in enumerate(examples) if e.source == SOURCE_OWN and e.group not in dev_documents
    ]
    splits = {
        TRANSFER_SPLITS[0]: (
            [i for i, e in enumerate(examples) if e.source in (SOURCE_DEV, SOURCE_REPORT)],
            own_elsewhere,
        ),
        TRANSFER_SPLITS[1]: (
            own_elsewhere,
            [i for i, e in enumerate(examples) if e.source == SOURCE_DEV],
        ),
    }
    summary = {}
    for title, (train, test) in splits.items():
        train_examples = [examples[i] for i in train]
        if {e.label for e in train_examples} != set(TOPICS):
            print(f"\n=== transfer: {title}: skipped, a label is missing from training ===")
            continue
        extra_options = {} if embeddings is None else {"embeddings": embeddings[train]}
        classifier = train_classifier(
            train_examples,
            tokens=[tokens[i] for i in train],
            seed=args.seeds[0],
            **options,
            **extra_options,
        )
        test_examples = [examples[i] for i in test]
        shared_documents = {e.group for e in train_examples} & {e.group for e in test_examples}
        result = evaluate(
            classifier,
            test_examples,
            [tokens[i] for i in test],
            embeddings=embeddings[test] if embeddings is not None else None,
        )
        print(f"\n=== transfer: {title} (own labels only on documents without dev rows) ===")
        print(
            f"  train {len(train)} rows, test {len(test)} rows, "
            f"documents on both sides: {len(shared_documents)}"
        )
        print(_table("test rows", result))
        summary[title] = {**_rounded(result), "n_train": len(train), "n_test": len(test)}
    return summary


def run_document_context(data: TrainingSet, args: argparse.Namespace) -> dict[str, Any]:
    """Grouped CV over the dev documents with every paragraph of a held-out document classified,
    so that each labelled paragraph can be read within its document as the indexer tags it
    (`TopicClassifier.predict(documents=...)`), at several document weights."""
    examples, tokens, embeddings, options = data.unpack()
    from scipy.special import softmax

    from eval.classify import classification_metrics, document_folds
    from nlp.paragraphs import split_passages
    from nlp.reader import read_document
    from nlp.segment import segment_texts

    dev = [i for i, e in enumerate(examples) if e.source == SOURCE_DEV]
    extra = [i for i, e in enumerate(examples) if e.source != SOURCE_DEV]
    documents = {}
    for group in sorted({examples[i].group for i in dev}):
        passages = split_passages(read_document(args.shared / "corpus" / group))
        vectors = (
            _embed(passages, options["embedder"], args.embedding_cache)
            if embeddings is not None
            else None
        )
        texts = [p.text for p in passages]
        documents[group] = (texts, [p.section for p in passages], segment_texts(texts), vectors)
    print(
        f"\n=== document context: {len(documents)} dev documents, "
        f"{sum(len(d[0]) for d in documents.values())} paragraphs classified per seed ==="
    )
    weights = (0.0, 0.5, 1.0)
    results: dict[float, list[dict[str, Any]]] = {w: [] for w in weights}
    gold = [examples[i].label for i in dev]
    for seed in args.seeds:
        predicted: dict[float, list[str]] = {w: [""] * len(dev) for w in weights}
        scores: dict[float, list[dict[str, float]]] = {w: [{}] * len(dev) for w in weights}
        for train, test in document_folds([examples[i] for i in dev], args.folds, seed):
            held = {examples[dev[j]].group for j in test}
            rows = [dev[j] for j in train] + [i for i in extra if examples[i].group not in held]
            classifier = train_classifier(
                [examples[i] for i in rows],
                tokens=[tokens[i] for i in rows],
                seed=seed,
                **options,
                **({} if embeddings is None else {"embeddings": embeddings[rows]}),
                **data.context_of(rows),
            )
            # As `predict(documents=...)`: the head that reads paragraphs within their
            # documents when the model has one, with each document's mean vector.
            head = classifier.context_model or classifier
            means, vector_means = {}, {}
            for group in held:
                texts, sections, doc_tokens, vectors = documents[group]
                context = None
                if vectors is not None and head is not classifier:
                    context = document_means(vectors, [group] * len(texts))[0].astype(np.float32)
                    vector_means[group] = context[0]
                doc_logits = head.decision_function(
                    texts, doc_tokens, sections, vectors, context=context
                )
                means[group] = doc_logits.mean(axis=0)
            picked = [dev[j] for j in test]
            logits = head.decision_function(
                [examples[i].text for i in picked],
                [tokens[i] for i in picked],
                [examples[i].section for i in picked],
                embeddings[picked] if embeddings is not None else None,
                context=np.stack([vector_means[examples[i].group] for i in picked])
                if vector_means
                else None,
            )
            for weight in weights:
                # The mean over the document's paragraphs (the labelled one among them);
                # `predict` adds it (at DOCUMENT_WEIGHT) only for a model without the head.
                for j, row in zip(test, logits, strict=True):
                    group = examples[dev[j]].group
                    mixed = row + weight * means[group]
                    predicted[weight][j] = classifier.labels[int(mixed.argmax())]
                    # The probabilities `predict` gives (the logits are temperature-scaled).
                    probabilities = softmax(mixed)
                    scores[weight][j] = dict(zip(head.labels, probabilities, strict=True))
        for weight in weights:
            results[weight].append(classification_metrics(gold, predicted[weight], scores[weight]))
    summary = {}
    for weight in weights:
        merged = _mean_metrics(results[weight])
        print(_table(f"dev rows, document weight {weight:g}", merged))
        summary[f"document_weight_{weight:g}"] = _rounded(merged)
    return summary


def _evaluate_all(data: TrainingSet, args: argparse.Namespace) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    if args.mode in ("train", "cv", "all"):
        summary = run_cross_validation(data, args)
    if args.mode in ("transfer", "all"):
        summary["transfer"] = run_transfer(data, args)
    if args.mode in ("documents", "all"):
        summary["document_context"] = run_document_context(data, args)
    return summary


def _comparison(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A before/after table of the headline macro-F1 numbers."""
    rows = [
        ("dev rows", ("dev_protocol", "macro_f1")),
        ("dev rows, agreement=high", ("dev_protocol", "macro_f1_high_agreement")),
        ("dev rows, no headings", ("dev_protocol_text_only", "macro_f1")),
        ("all rows", ("all_rows", "macro_f1")),
        ("all rows, no headings", ("all_rows_text_only", "macro_f1")),
    ] + [(f"transfer {title}", ("transfer", title, "macro_f1")) for title in TRANSFER_SPLITS]
    lines = [f"  {'macro-F1':<32} {'TF-IDF only':>11} {'+ embeddings':>12}"]
    for name, path in rows:
        values = []
        for summary in (before, after):
            value: Any = summary
            for key in path:
                value = value.get(key, {}) if isinstance(value, dict) else {}
            values.append(f"{value:.3f}" if isinstance(value, float) else "-")
        lines.append(f"  {name:<32} {values[0]:>11} {values[1]:>12}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared",
        type=Path,
        default=DEFAULT_SHARED_DIR,
        help="the shared/ folder with labels/ and corpus/",
    )
    parser.add_argument(
        "--labels",
        type=Path,
        default=DEFAULT_LABELS_PATH,
        help="this project's label references (JSONL)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_MODEL_DIR,
        help="model folder to write (default: the shipped model)",
    )
    parser.add_argument(
        "--mode",
        choices=("train", "cv", "transfer", "documents", "all"),
        default="train",
        help="train: CV then write the model; cv / transfer / documents (paragraphs read "
        "within their documents): report only; all: all three, then write the model",
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--seeds",
        type=lambda value: [int(part) for part in value.split(",")],
        default=[0, 1],
        help="comma-separated seeds of the CV fold assignments; numbers are their mean "
        "(the first also seeds the calibration folds of the shipped model)",
    )
    parser.add_argument("--c", type=float, default=10.0, help="logistic regression C")
    parser.add_argument(
        "--embedding-weight",
        type=float,
        default=DEFAULT_EMBEDDING_WEIGHT,
        help="scale of the passage embeddings beside the TF-IDF blocks; 0: TF-IDF only",
    )
    parser.add_argument(
        "--context-weight",
        type=float,
        default=DEFAULT_CONTEXT_WEIGHT,
        help="scale of the document context (each paragraph's document's mean passage vector, "
        "read from --shared's corpus); 0: paragraphs only ever read alone",
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also cross-validate the TF-IDF-only model and print a before/after table",
    )
    parser.add_argument(
        "--embedding-cache",
        type=Path,
        help="folder that keeps the training embeddings between runs (e.g. /tmp/vnsearch-emb)",
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="processes for word segmentation (0: every core)"
    )
    parser.add_argument("--plot", type=Path, help="write the CV confusion matrix PNG here")
    args = parser.parse_args(argv)

    from nlp.errors import VnsearchError

    try:
        examples = default_training_examples(args.shared, args.labels)
    except VnsearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_summary(examples))
    started = time.perf_counter()
    tokens = _segment(examples, args.workers)
    print(f"segmented {len(examples)} paragraphs in {time.perf_counter() - started:.0f} s")

    options: dict[str, Any] = {"c": args.c, "embedding_weight": args.embedding_weight}
    embeddings = None
    if args.embedding_weight > 0:
        started = time.perf_counter()
        try:
            embedder = shared_embedder()
            embeddings = _embed(examples, embedder, args.embedding_cache)
        except VnsearchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        options["embedder"] = embedder
        print(
            f"embedded {len(examples)} paragraphs with {embedder.name} ({embedder.fingerprint}) "
            f"in {time.perf_counter() - started:.0f} s"
        )
    contexts = None
    if embeddings is not None and args.context_weight > 0:
        started = time.perf_counter()
        contexts = document_contexts(
            examples,
            args.shared / "corpus",
            lambda passages: _embed(passages, embedder, args.embedding_cache),
            embeddings,
        )
        options["context_weight"] = args.context_weight
        print(
            f"read the {len({e.group for e in examples})} documents for their mean vectors in "
            f"{time.perf_counter() - started:.0f} s"
        )

    baseline: dict[str, Any] = {}
    if args.baseline and args.embedding_weight > 0 and args.mode != "train":
        print("\n######## baseline: TF-IDF only (--embedding-weight 0) ########")
        tfidf_only = TrainingSet(examples, tokens, None, {"c": args.c, "embedding_weight": 0})
        baseline = _evaluate_all(tfidf_only, args)
        baseline.pop("plot_source", None)
        print(f"\n######## model: TF-IDF + embeddings (weight {args.embedding_weight:g}) ########")
    summary = _evaluate_all(TrainingSet(examples, tokens, embeddings, options, contexts), args)
    dev_result = summary.pop("plot_source", None)
    if args.plot and dev_result is not None:
        plot_confusion(dev_result, args.plot)
        print(f"confusion matrix of the dev protocol written to {args.plot}")
    if baseline:
        summary["baseline_tfidf_only"] = baseline
        print("\nbefore/after (mean macro-F1 over seeds " + ",".join(map(str, args.seeds)) + "):")
        print(_comparison(baseline, summary))
    if args.mode in ("train", "all"):
        classifier = train_classifier(
            examples,
            tokens=tokens,
            embeddings=embeddings,
            seed=args.seeds[0],
            contexts=contexts,
            **options,
        )
        if summary:
            summary["embedding_weight"] = args.embedding_weight
            classifier.info["cross_validation"] = summary
        classifier.save(args.out)
        size = sum(f.stat().st_size for f in args.out.iterdir())
        dense = classifier.embedding.dim if classifier.embedding is not None else 0
        print(
            f"\nwrote {args.out} ({size / 1024:.0f} KiB, temperature "
            f"{classifier.temperature:.2f}, {sum(len(b.vocabulary) for b in classifier.blocks)}"
            f" TF-IDF features + {dense} embedding dimensions)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
