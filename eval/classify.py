"""Measure the topic classifier: metrics, cross-validation grouped by document, confusion plots."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.topics import (
    TOPICS,
    LabelledExample,
    TopicClassifier,
    TopicPrediction,
    predict_within_documents,
)
from nlp.errors import InvalidInputError


def classification_metrics(
    true: Sequence[str],
    predicted: Sequence[str],
    scores: Sequence[dict[str, float]] | None = None,
    labels: Sequence[str] = TOPICS,
) -> dict[str, Any]:
    """Return accuracy, macro-F1, per-class scores and the confusion matrix.

    Args:
        true: Gold labels.
        predicted: Predicted labels, in the same order.
        scores: Predicted probabilities per label, to add the log-loss.
        labels: Label order of the per-class table and the confusion matrix.

    Returns:
        `{"n", "accuracy", "macro_f1", "per_class": {label: {"precision", "recall", "f1",
        "support"}}, "confusion": {"labels", "matrix"}}` (rows are gold labels, columns
        predictions) and, when scores are given, `"log_loss"` and `"ece"`
        (`expected_calibration_error`). The macro-F1 averages the labels that occur in `true`
        or `predicted`.

    Raises:
        InvalidInputError: The sequences differ in length or are empty.
    """
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        log_loss,
        precision_recall_fscore_support,
    )

    if len(true) != len(predicted) or not true:
        raise InvalidInputError(
            f"need as many predictions as gold labels, and at least one: got {len(true)} gold "
            f"and {len(predicted)} predicted"
        )
    labels = list(labels)
    # A label that is neither gold nor predicted anywhere has no F1 to speak of; leaving it out
    # of the macro average keeps small test sets from being scored against absent classes.
    present = [label for label in labels if label in set(true) | set(predicted)]
    precision, recall, f1, support = precision_recall_fscore_support(
        true, predicted, labels=labels, zero_division=0
    )
    result: dict[str, Any] = {
        "n": len(true),
        "accuracy": float(accuracy_score(true, predicted)),
        "macro_f1": float(
            f1_score(true, predicted, labels=present, average="macro", zero_division=0)
        ),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion": {
            "labels": labels,
            "matrix": confusion_matrix(true, predicted, labels=labels).tolist(),
        },
    }
    if scores is not None:
        # log_loss reads probability columns in sorted label order.
        ordered = sorted(labels)
        probabilities = np.array([[row[label] for label in ordered] for row in scores], float)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        result["log_loss"] = float(log_loss(true, probabilities, labels=ordered))
        result["ece"] = expected_calibration_error(
            [t == p for t, p in zip(true, predicted, strict=True)],
            [row[label] for row, label in zip(scores, predicted, strict=True)],
        )
    return result


def expected_calibration_error(
    correct: Sequence[bool], confidence: Sequence[float], bins: int = 10
) -> float:
    """Return the expected calibration error of predictions with the given confidences.

    The confidences (each prediction's probability for the label it chose) are put in `bins`
    equal-width bins over [0, 1]; the error is the mean, weighted by each bin's share of the
    predictions, of |accuracy - mean confidence| in the bin. 0 means that predictions made
    with probability p are right a share p of the time.

    Args:
        correct: Whether each prediction was right.
        confidence: The probability each prediction gave its label, in the same order.
        bins: Number of bins.

    Raises:
        InvalidInputError: The sequences differ in length or are empty.
    """
    if len(correct) != len(confidence) or not correct:
        raise InvalidInputError(
            f"need one confidence per prediction, and at least one: got {len(correct)} "
            f"outcomes and {len(confidence)} confidences"
        )
    right = np.asarray(correct, dtype=float)
    sure = np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0)
    which = np.minimum((sure * bins).astype(int), bins - 1)
    error = 0.0
    for b in np.unique(which):
        rows = which == b
        error += rows.mean() * abs(right[rows].mean() - sure[rows].mean())
    return float(error)


def evaluate(
    classifier: TopicClassifier,
    examples: Sequence[LabelledExample],
    tokens: Sequence[Sequence[str]] | None = None,
    use_sections: bool = True,
    embeddings: np.ndarray | None = None,
    documents: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Score a classifier on labelled examples.

    Args:
        classifier: The classifier to measure; it must not have been trained on `examples`.
        examples: Labelled paragraphs.
        tokens: Their segmentation when already known.
        use_sections: Pass the examples' section headings to the classifier.
        embeddings: Their passage embeddings when already known (for a classifier that reads
            them; it embeds the texts itself otherwise).
        documents: A corpus folder: an example whose document (`group`, e.g.
            `party/x.md`) is a file there is classified within that document, beside all its
            other paragraphs, as `vnsearch index` tags it (`predict(documents=...)`), and
            under its paragraph's heading there when it has no `section` of its own; the
            others alone. None classifies every example alone, as given.

    Returns:
        The dict of `classification_metrics`, with `log_loss` and `"in_documents"` (how many
        examples were read within their document).
    """
    if documents is None:
        predictions = _predict(classifier, examples, tokens, use_sections, embeddings)
        within = 0
    else:
        predictions, within = predict_within_documents(
            classifier,
            [example.text for example in examples],
            [example.section if use_sections else "" for example in examples],
            [example.group for example in examples],
            documents,
            headings=use_sections,
        )
    result = classification_metrics(
        [example.label for example in examples],
        [prediction.topic for prediction in predictions],
        [prediction.scores for prediction in predictions],
    )
    result["in_documents"] = within
    return result


def _predict(
    classifier: TopicClassifier,
    examples: Sequence[LabelledExample],
    tokens: Sequence[Sequence[str]] | None,
    use_sections: bool,
    embeddings: np.ndarray | None = None,
) -> list[TopicPrediction]:
    sections = [example.section if use_sections else "" for example in examples]
    texts = [example.text for example in examples]
    if embeddings is None:  # classifiers without a dense block need not take the argument
        return classifier.predict(texts, tokens, sections)
    return classifier.predict(texts, tokens, sections, embeddings=embeddings)


def document_folds(
    examples: Sequence[LabelledExample], folds: int = 5, seed: int = 0
) -> list[tuple[list[int], list[int]]]:
    """Split example indices into folds so that no document is on both sides.

    Args:
        examples: Labelled paragraphs; `group` is the document.
        folds: Number of folds.
        seed: Seed of the shuffle.

    Returns:
        (train indices, test indices) per fold, stratified by label as far as groups allow.

    Raises:
        InvalidInputError: There are fewer documents than folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    groups = [example.group for example in examples]
    if folds < 2 or len(set(groups)) < folds:
        raise InvalidInputError(
            f"{len(set(groups))} documents cannot fill {folds} folds; use 2 <= folds <= documents"
        )
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    labels = [example.label for example in examples]
    return [
        (train.tolist(), test.tolist())
        for train, test in splitter.split(np.zeros(len(examples)), labels, groups)
    ]


def grouped_cross_validation(
    examples: Sequence[LabelledExample],
    folds: int = 5,
    seed: int = 0,
    *,
    extra: Sequence[LabelledExample] = (),
    tokens: Sequence[Sequence[str]] | None = None,
    extra_tokens: Sequence[Sequence[str]] | None = None,
    embeddings: np.ndarray | None = None,
    extra_embeddings: np.ndarray | None = None,
    workers: int = 1,
    use_sections: bool = True,
    score_text_only: bool = False,
    train_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Cross-validate `train_classifier` with whole documents held out.

    The folds split `examples` by document. Each fold trains on the other folds' examples plus
    the `extra` examples whose document is not in the held-out fold, and predicts its own
    examples; the held-out predictions of all folds are pooled and scored once. `extra` rows
    are never scored: use them for training data that should not count in the result.

    Args:
        examples: Labelled paragraphs to score; `group` is the document, `source` the origin.
        folds: Number of folds.
        seed: Seed of the fold assignment.
        extra: Training-only examples.
        tokens: The examples' segmentation when already known (segmented once otherwise).
        extra_tokens: The same for `extra`.
        embeddings: The examples' passage embeddings (`Embedder.embed_passages`), so that
            folds do not embed again; pass `embedder` in `train_options` when they do not come
            from the default embedder.
        extra_embeddings: The same for `extra`; needed when `embeddings` is given.
        workers: Processes for segmentation (0: every core).
        use_sections: Pass section headings to the classifier when predicting.
        score_text_only: Also let the same fold models predict without section headings, and
            score that in `"text_only"` (headings are a training feature either way).
        train_options: Keyword arguments for `train_classifier` (`c`, `features`,
            `embedding_weight`, `embedder` ...).

    Returns:
        The dict of `classification_metrics` over all held-out predictions, plus
        `"per_fold_macro_f1"`, `"folds"` (each fold's train and test documents and sizes),
        `"by_source"` (the same metrics on the rows of each `source`), `"predictions"`
        (the held-out label of each example, in order) and, with `score_text_only`,
        `"text_only"` (the metrics, `"by_source"` and `"predictions"` without headings).
    """
    from models.topics import train_classifier

    if tokens is None or (extra and extra_tokens is None):
        from nlp.segment import segment_texts

        if tokens is None:
            tokens = segment_texts([example.text for example in examples], workers=workers)
        if extra and extra_tokens is None:
            extra_tokens = segment_texts([example.text for example in extra], workers=workers)
    extra_tokens = extra_tokens or []
    if embeddings is not None:
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if len(embeddings) != len(examples) or (
            extra and (extra_embeddings is None or len(extra_embeddings) != len(extra))
        ):
            raise InvalidInputError(
                "pass one embedding per example and per extra example, or none at all"
            )
        if extra_embeddings is None:
            extra_embeddings = np.zeros((0, embeddings.shape[1]), dtype=np.float32)
        extra_embeddings = np.asarray(extra_embeddings, dtype=np.float32)
    true = [example.label for example in examples]
    variants = [use_sections, False] if score_text_only else [use_sections]
    predicted = [[""] * len(examples) for _ in variants]
    scores: list[list[dict[str, float]]] = [[{}] * len(examples) for _ in variants]
    fold_reports = []
    for train, test in document_folds(examples, folds, seed):
        held_out = {examples[i].group for i in test}
        added = [i for i, example in enumerate(extra) if example.group not in held_out]
        fold_options = dict(train_options or {})
        if embeddings is not None and extra_embeddings is not None:
            fold_options["embeddings"] = np.concatenate(
                [embeddings[train], extra_embeddings[added]]
            )
        classifier = train_classifier(
            [examples[i] for i in train] + [extra[i] for i in added],
            tokens=[tokens[i] for i in train] + [extra_tokens[i] for i in added],
            seed=seed,
            **fold_options,
        )
        test_examples = [examples[i] for i in test]
        for variant, with_sections in enumerate(variants):
            predictions = _predict(
                classifier,
                test_examples,
                [tokens[i] for i in test],
                with_sections,
                embeddings[test] if embeddings is not None else None,
            )
            for index, prediction in zip(test, predictions, strict=True):
                predicted[variant][index] = prediction.topic
                scores[variant][index] = prediction.scores
        fold_metrics = classification_metrics(
            [true[i] for i in test], [predicted[0][i] for i in test]
        )
        fold_reports.append(
            {
                "train_groups": sorted(
                    {examples[i].group for i in train} | {extra[i].group for i in added}
                ),
                "test_groups": sorted(held_out),
                "n_train": len(train) + len(added),
                "n_test": len(test),
                "macro_f1": fold_metrics["macro_f1"],
            }
        )
    result = _pooled_metrics(examples, predicted[0], scores[0])
    result["per_fold_macro_f1"] = [fold["macro_f1"] for fold in fold_reports]
    result["folds"] = fold_reports
    if score_text_only:
        result["text_only"] = _pooled_metrics(examples, predicted[1], scores[1])
    return result


def _pooled_metrics(
    examples: Sequence[LabelledExample],
    predicted: Sequence[str],
    scores: Sequence[dict[str, float]],
) -> dict[str, Any]:
    """Score held-out predictions overall and per source; keep the predictions."""
    true = [example.label for example in examples]
    result = classification_metrics(true, predicted, scores)
    result["by_source"] = {}
    for source in sorted({example.source for example in examples}):
        rows = [i for i, example in enumerate(examples) if example.source == source]
        result["by_source"][source] = classification_metrics(
            [true[i] for i in rows], [predicted[i] for i in rows], [scores[i] for i in rows]
        )
    result["predictions"] = list(predicted)
    return result


def plot_confusion(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Draw the confusion matrix of a metrics dict as a PNG.

    Cells show counts; colours show the share of each gold label's row.

    Args:
        result: A dict from `classification_metrics`, `evaluate` or `grouped_cross_validation`.
        path: The PNG file to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = result["confusion"]["labels"]
    matrix = np.array(result["confusion"]["matrix"], dtype=float)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1.0)
    figure, axes = plt.subplots(figsize=(7.5, 6.5))
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    axes.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("gold")
    axes.set_title(
        f"n={result['n']}  accuracy={result['accuracy']:.3f}  macro-F1={result['macro_f1']:.3f}"
    )
    for row in range(len(labels)):
        for column in range(len(labels)):
            axes.text(
                column,
                row,
                f"{int(matrix[row, column])}",
                ha="center",
                va="center",
                color="white" if shares[row, column] > 0.5 else "black",
            )
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of gold row")
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
