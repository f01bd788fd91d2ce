"""Rebuild the shipped topic model and report grouped cross-validation and transfer scores.

Usage (from the repository root):

    python -m eval.train_topics                   # cross-validate, then write models/topic_model/
    python -m eval.train_topics --mode transfer   # train on one label source, test on the other
    python -m eval.train_topics --mode all --plot var/topics-cv.png

Cross-validation holds out whole documents (every paragraph of a file is on one side), in two
protocols: folds over the dev documents with the other sources added to training folds only
(scores on dev rows), and folds over all documents (scores on all rows, per source). Both run
with and without the section heading feature. The transfer mode trains on the dev labels (plus
the report headings) and tests on this project's labels from documents that have no dev row,
then the other way round, so that no number comes from a single split or from training data.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from eval.classify import evaluate, grouped_cross_validation, plot_confusion  # noqa: E402
from models.topics import (  # noqa: E402
    DEFAULT_LABELS_PATH,
    DEFAULT_MODEL_DIR,
    DEFAULT_SHARED_DIR,
    SOURCE_DEV,
    SOURCE_OWN,
    SOURCE_REPORT,
    TOPICS,
    LabelledExample,
    default_training_examples,
    train_classifier,
)


def _table(title: str, result: dict[str, Any]) -> str:
    lines = [
        f"{title}: n={result['n']}  accuracy={result['accuracy']:.3f}  "
        f"macro-F1={result['macro_f1']:.3f}"
        + (f"  log-loss={result['log_loss']:.3f}" if "log_loss" in result else ""),
        f"  {'label':<18} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}",
    ]
    for label, row in result["per_class"].items():
        lines.append(
            f"  {label:<18} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>6.3f} "
            f"{row['support']:>8d}"
        )
    if "per_fold_macro_f1" in result:
        folds = ", ".join(f"{value:.3f}" for value in result["per_fold_macro_f1"])
        lines.append(f"  per-fold macro-F1: {folds}")
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


def run_cross_validation(
    examples: Sequence[LabelledExample],
    tokens: Sequence[Sequence[str]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Print both grouped CV protocols; return a summary for the model manifest.

    Dev protocol: folds split the dev rows by document; the other sources join each training
    fold unless their document is held out; only dev rows are scored (all of them, and those
    both readers were confident about). All-rows protocol: folds split every row by document and
    every row is scored, per source as well. Each runs with and without section headings.
    """
    options = {"c": args.c}
    agreement = _agreement(args.shared)
    dev = [i for i, e in enumerate(examples) if e.source == SOURCE_DEV]
    extra = [i for i, e in enumerate(examples) if e.source != SOURCE_DEV]
    dev_rows = [examples[i] for i in dev]
    high = [k for k, e in enumerate(dev_rows) if agreement.get(e.text) == "high"]
    summary: dict[str, Any] = {"folds": args.folds, "seed": args.seed}
    for use_sections in (True, False):
        heading = "with section headings" if use_sections else "text only (no headings)"
        started = time.perf_counter()
        result = grouped_cross_validation(
            dev_rows,
            folds=args.folds,
            seed=args.seed,
            extra=[examples[i] for i in extra],
            tokens=[tokens[i] for i in dev],
            extra_tokens=[tokens[i] for i in extra],
            use_sections=use_sections,
            train_options=options,
        )
        confident = _subset(result, dev_rows, high)
        print(
            f"\n=== dev protocol: {args.folds}-fold CV over dev documents, other sources "
            f"train only, {heading} ({time.perf_counter() - started:.0f} s) ==="
        )
        print(_table("held-out dev rows", result))
        print(_table("held-out dev rows with agreement=high", confident))
        if use_sections:
            print("\nconfusion matrix, held-out dev rows:")
            print(_confusion(result))
            dev_result = result
        key = "dev_protocol" if use_sections else "dev_protocol_text_only"
        summary[key] = {
            "macro_f1": round(result["macro_f1"], 4),
            "accuracy": round(result["accuracy"], 4),
            "macro_f1_high_agreement": round(confident["macro_f1"], 4),
            "per_class_f1": {k: round(v["f1"], 4) for k, v in result["per_class"].items()},
            "log_loss": round(result["log_loss"], 4),
        }

        started = time.perf_counter()
        result = grouped_cross_validation(
            examples,
            folds=args.folds,
            seed=args.seed,
            tokens=tokens,
            use_sections=use_sections,
            train_options=options,
        )
        print(
            f"\n=== all-rows protocol: {args.folds}-fold CV over all documents, {heading} "
            f"({time.perf_counter() - started:.0f} s) ==="
        )
        print(_table("all held-out rows", result))
        for source, subset in result["by_source"].items():
            print(_table(f"held-out rows from source '{source}'", subset))
        key = "all_rows" if use_sections else "all_rows_text_only"
        summary[key] = {
            "macro_f1": round(result["macro_f1"], 4),
            "accuracy": round(result["accuracy"], 4),
            "by_source_macro_f1": {
                k: round(v["macro_f1"], 4) for k, v in result["by_source"].items()
            },
            "log_loss": round(result["log_loss"], 4),
        }
    summary["plot_source"] = dev_result
    return summary


def run_transfer(
    examples: Sequence[LabelledExample],
    tokens: Sequence[Sequence[str]],
    args: argparse.Namespace,
) -> None:
    """Train on one label source and test on the other, on documents the model never saw."""
    dev_documents = {e.group for e in examples if e.source in (SOURCE_DEV, SOURCE_REPORT)}
    splits = {
        "dev+report -> own labels on documents without dev rows": (
            [i for i, e in enumerate(examples) if e.source in (SOURCE_DEV, SOURCE_REPORT)],
            [
                i
                for i, e in enumerate(examples)
                if e.source == SOURCE_OWN and e.group not in dev_documents
            ],
        ),
        "own labels on documents without dev rows -> dev": (
            [
                i
                for i, e in enumerate(examples)
                if e.source == SOURCE_OWN and e.group not in dev_documents
            ],
            [i for i, e in enumerate(examples) if e.source == SOURCE_DEV],
        ),
    }
    for title, (train, test) in splits.items():
        train_examples = [examples[i] for i in train]
        if {e.label for e in train_examples} != set(TOPICS):
            print(f"\n=== transfer: {title}: skipped, a label is missing from training ===")
            continue
        classifier = train_classifier(
            train_examples, tokens=[tokens[i] for i in train], c=args.c, seed=args.seed
        )
        test_examples = [examples[i] for i in test]
        shared_documents = {e.group for e in train_examples} & {e.group for e in test_examples}
        result = evaluate(classifier, test_examples, [tokens[i] for i in test])
        print(f"\n=== transfer: {title} ===")
        print(
            f"  train {len(train)} rows, test {len(test)} rows, "
            f"documents on both sides: {len(shared_documents)}"
        )
        print(_table("test rows", result))


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
        choices=("train", "cv", "transfer", "all"),
        default="train",
        help="train: CV then write the model; cv / transfer: report only; "
        "all: CV, transfer, then write the model",
    )
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--c", type=float, default=10.0, help="logistic regression C")
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

    summary: dict[str, Any] = {}
    if args.mode in ("train", "cv", "all"):
        summary = run_cross_validation(examples, tokens, args)
        dev_result = summary.pop("plot_source")
        if args.plot:
            plot_confusion(dev_result, args.plot)
            print(f"confusion matrix of the dev protocol written to {args.plot}")
    if args.mode in ("transfer", "all"):
        run_transfer(examples, tokens, args)
    if args.mode in ("train", "all"):
        classifier = train_classifier(examples, tokens=tokens, c=args.c, seed=args.seed)
        if summary:
            classifier.info["cross_validation"] = summary
        classifier.save(args.out)
        size = sum(f.stat().st_size for f in args.out.iterdir())
        print(
            f"\nwrote {args.out} ({size / 1024:.0f} KiB, temperature "
            f"{classifier.temperature:.2f}, {sum(len(b.vocabulary) for b in classifier.blocks)}"
            " features)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
