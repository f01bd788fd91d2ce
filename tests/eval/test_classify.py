"""Evaluation of the topic classifier: metrics against hand-computed values, grouped folds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from eval.classify import (
    classification_metrics,
    document_folds,
    evaluate,
    expected_calibration_error,
    grouped_cross_validation,
    plot_confusion,
)
from models.topics import TOPICS, LabelledExample, TopicPrediction, load_labelled
from nlp.errors import InvalidInputError

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DEV_LABELS = SHARED / "labels" / "topics-dev.jsonl"

GOLD = ["ideology", "ideology", "organisation", "inspection", "other", "other"]
PREDICTED = ["ideology", "organisation", "organisation", "inspection", "other", "ideology"]


class FixedClassifier:
    """Stands in for a TopicClassifier: returns given labels with 0.6 for the predicted one."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels

    def predict(self, texts, tokens=None, sections=None, embeddings=None) -> list[TopicPrediction]:
        assert len(texts) == len(self.labels)
        return [
            TopicPrediction(label, {t: 0.6 if t == label else 0.08 for t in TOPICS})
            for label in self.labels
        ]


def _examples(labels: list[str]) -> list[LabelledExample]:
    return [LabelledExample(f"đoạn {i}", label, f"doc{i}") for i, label in enumerate(labels)]


def test_evaluate_matches_hand_computed_numbers():
    result = evaluate(FixedClassifier(PREDICTED), _examples(GOLD))
    assert result["n"] == 6
    assert result["accuracy"] == pytest.approx(4 / 6)
    ideology = result["per_class"]["ideology"]  # tp 1, fp 1 (other->ideology), fn 1
    assert (ideology["precision"], ideology["recall"], ideology["f1"]) == pytest.approx(
        (0.5, 0.5, 0.5)
    )
    organisation = result["per_class"]["organisation"]  # tp 1, fp 1, fn 0
    assert organisation["f1"] == pytest.approx(2 / 3)
    assert result["per_class"]["inspection"]["f1"] == pytest.approx(1.0)
    other = result["per_class"]["other"]  # tp 1, fp 0, fn 1
    assert (other["precision"], other["recall"]) == pytest.approx((1.0, 0.5))
    assert result["per_class"]["anti_corruption"]["support"] == 0
    # Macro-F1 over the four labels that occur: (0.5 + 2/3 + 1 + 2/3) / 4.
    assert result["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1 + 2 / 3) / 4)
    assert result["confusion"]["labels"] == list(TOPICS)
    matrix = result["confusion"]["matrix"]
    assert matrix[TOPICS.index("ideology")][TOPICS.index("organisation")] == 1
    assert matrix[TOPICS.index("other")][TOPICS.index("ideology")] == 1
    assert sum(map(sum, matrix)) == 6
    # p(gold) is 0.6 for the four right answers and 0.08 for the two wrong ones.
    assert result["log_loss"] == pytest.approx(-(4 * math.log(0.6) + 2 * math.log(0.08)) / 6)
    # Every prediction said 0.6 and 4 of 6 were right: one bin, |4/6 - 0.6|.
    assert result["ece"] == pytest.approx(4 / 6 - 0.6)


def test_expected_calibration_error_weighs_each_bin_by_its_share():
    # Bin 0.9-1.0: 2 predictions at 0.95, both right (gap 0.05); bin 0.5-0.6: 2 at 0.55, one
    # right (gap 0.05); bin 0.3-0.4: 1 at 0.3, wrong (gap 0.3).
    correct = [True, True, True, False, False]
    confidence = [0.95, 0.95, 0.55, 0.55, 0.3]
    assert expected_calibration_error(correct, confidence) == pytest.approx(
        0.4 * 0.05 + 0.4 * 0.05 + 0.2 * 0.3
    )
    assert expected_calibration_error([True], [1.0]) == 0.0
    with pytest.raises(InvalidInputError, match="one confidence per prediction"):
        expected_calibration_error([True], [])


def test_metrics_refuse_mismatched_lengths():
    with pytest.raises(InvalidInputError, match="as many predictions"):
        classification_metrics(["other"], [])


@pytest.fixture(scope="module")
def dev_subset() -> list[LabelledExample]:
    """Real dev paragraphs, five of each label, from many documents."""
    chosen: dict[str, list[LabelledExample]] = {label: [] for label in TOPICS}
    for example in load_labelled(DEV_LABELS):
        if len(chosen[example.label]) < 5:
            chosen[example.label].append(example)
    return [example for label in TOPICS for example in chosen[label]]


def test_document_folds_never_split_a_document(dev_subset):
    # Put pairs of examples in one document so that grouping is really exercised.
    examples = [LabelledExample(e.text, e.label, f"doc{i // 2}") for i, e in enumerate(dev_subset)]
    folds = document_folds(examples, folds=3, seed=1)
    tested = sorted(i for _, test in folds for i in test)
    assert tested == list(range(len(examples)))
    for train, test in folds:
        assert {examples[i].group for i in train}.isdisjoint({examples[i].group for i in test})


def test_too_few_documents_for_the_folds():
    with pytest.raises(InvalidInputError, match="cannot fill 5 folds"):
        document_folds(_examples(["other", "ideology", "other"]), folds=5)


def test_grouped_cross_validation_holds_out_whole_documents(dev_subset, tmp_path):
    from nlp.segment import segment_texts

    tokens = segment_texts([e.text for e in dev_subset])
    result = grouped_cross_validation(
        dev_subset,
        folds=2,
        tokens=tokens,
        train_options={"calibration_folds": 0, "embedding_weight": 0},
    )
    assert result["n"] == len(dev_subset)
    assert len(result["per_fold_macro_f1"]) == 2
    assert all(label in TOPICS for label in result["predictions"])
    for fold in result["folds"]:
        assert set(fold["train_groups"]).isdisjoint(fold["test_groups"])
    assert sum(fold["n_test"] for fold in result["folds"]) == len(dev_subset)
    assert set(result["by_source"]) == {""}

    png = tmp_path / "confusion.png"
    plot_confusion(result, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cross_validation_with_embeddings_scores_both_heading_variants(dev_subset):
    from models.topics import shared_embedder
    from nlp.segment import segment_texts

    embedder = shared_embedder()
    # Scored rows cover every label in each training fold; extra rows are training-only.
    rows = dev_subset
    chosen = {e.text for e in dev_subset}
    extra = [e for e in load_labelled(DEV_LABELS) if e.text not in chosen][:12]
    result = grouped_cross_validation(
        rows,
        folds=2,
        extra=extra,
        tokens=segment_texts([e.text for e in rows]),
        extra_tokens=segment_texts([e.text for e in extra]),
        embeddings=embedder.embed_passages([e.text for e in rows]),
        extra_embeddings=embedder.embed_passages([e.text for e in extra]),
        score_text_only=True,
        train_options={"calibration_folds": 0, "embedder": embedder},
    )
    assert result["n"] == len(rows)
    assert result["text_only"]["n"] == len(rows)
    assert all(label in TOPICS for label in result["text_only"]["predictions"])
    for fold in result["folds"]:
        assert set(fold["train_groups"]).isdisjoint(fold["test_groups"])


def test_cross_validation_refuses_embeddings_that_do_not_match(dev_subset):
    import numpy as np

    with pytest.raises(InvalidInputError, match="one embedding per example"):
        grouped_cross_validation(
            dev_subset,
            folds=2,
            tokens=[[] for _ in dev_subset],
            embeddings=np.zeros((3, 384), dtype=np.float32),
        )


def test_evaluate_reads_paragraphs_within_their_documents(dev_subset):
    from models.topics import TopicClassifier

    model = TopicClassifier.load_default()
    rows = dev_subset[:6]
    missing = LabelledExample(rows[0].text, rows[0].label, "party/no-such-file.md")
    alone = evaluate(model, rows + [missing])
    within = evaluate(model, rows + [missing], documents=SHARED / "corpus")
    assert alone["in_documents"] == 0
    assert within["in_documents"] == len(rows)  # the row without a file is read alone
    assert within["n"] == alone["n"] == len(rows) + 1
    assert within["log_loss"] != alone["log_loss"]  # the documents changed the scores


class RecordingClassifier:
    """Stands in for a TopicClassifier: records what `predict` was given, answers `other`."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], list[str], object]] = []

    def predict(self, texts, tokens=None, sections=None, embeddings=None, documents=None):
        self.calls.append((list(texts), list(sections), documents))
        return [TopicPrediction("other", {t: 1 / len(TOPICS) for t in TOPICS}) for _ in texts]


@pytest.fixture(scope="module")
def headed_rows() -> list[tuple[LabelledExample, str]]:
    """Three dev rows (which carry no section) whose paragraph sits under a heading in its
    file, each with that heading."""
    from nlp.normalize import normalize_text
    from nlp.paragraphs import split_passages
    from nlp.reader import read_document

    found = []
    for example in load_labelled(DEV_LABELS):
        passages = split_passages(read_document(SHARED / "corpus" / example.group))
        headings = [p.section for p in passages if normalize_text(p.text) == example.text]
        if headings and headings[0] and not example.section:
            found.append((example, headings[0]))
            if len(found) == 3:
                return found
    raise AssertionError("too few dev rows under a heading")


def test_evaluate_within_documents_reads_rows_under_their_headings(headed_rows):
    rows = headed_rows
    examples = [example for example, _ in rows]
    classifier = RecordingClassifier()
    result = evaluate(classifier, examples, documents=SHARED / "corpus")
    [(texts, sections, documents)] = classifier.calls
    assert result["in_documents"] == len(rows)
    assert texts[: len(rows)] == [example.text for example in examples]
    assert sections[: len(rows)] == [heading for _, heading in rows]
    assert documents[: len(rows)] == [example.group for example in examples]
    # Alone, a row is read as given: without a heading.
    classifier.calls.clear()
    evaluate(classifier, examples)
    assert classifier.calls[0][1] == ["" for _ in rows]


def _run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    import sys

    import api.cli

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["vnsearch", *args])
    with pytest.raises(SystemExit) as exited:
        api.cli.main()
    captured = capsys.readouterr()
    return int(exited.value.code or 0), captured.out, captured.err


def _labelled_rows_file(folder: Path, examples: list[LabelledExample]) -> Path:
    """Write `examples` as labelled rows naming their file, as the dev labels do."""
    import json

    data = folder / "rows.jsonl"
    data.write_text(
        "".join(
            json.dumps({"text": e.text, "label": e.label, "file": e.group}, ensure_ascii=False)
            + "\n"
            for e in examples
        ),
        encoding="utf-8",
    )
    return data


def test_eval_classify_reads_rows_as_the_index_tags_them(
    monkeypatch, capsys, tmp_path, headed_rows
):
    import json

    import api.cli

    rows = headed_rows[:2]
    data = _labelled_rows_file(tmp_path, [example for example, _ in rows])
    classifier = RecordingClassifier()
    monkeypatch.setattr(api.cli, "load_classifier", lambda *args, **kwargs: classifier)

    code, out, _ = _run_cli(monkeypatch, capsys, "eval", "classify", "--data", str(data), "--json")
    assert code == 0 and json.loads(out)["in_documents"] == len(rows)  # ../shared/corpus
    assert classifier.calls[-1][1][: len(rows)] == [heading for _, heading in rows]

    code, out, _ = _run_cli(
        monkeypatch, capsys, "eval", "classify", "--data", str(data), "--alone", "--json"
    )
    assert code == 0 and json.loads(out)["in_documents"] == 0
    assert classifier.calls[-1][1] == ["", ""]


def test_eval_classify_prints_calibration_and_the_confusion_matrix(
    monkeypatch, capsys, tmp_path, headed_rows
):

    import api.cli

    rows = headed_rows[:2]
    data = _labelled_rows_file(tmp_path, [example for example, _ in rows])
    monkeypatch.setattr(api.cli, "load_classifier", lambda *args, **kwargs: RecordingClassifier())
    code, out, _ = _run_cli(monkeypatch, capsys, "eval", "classify", "--data", str(data))
    assert code == 0
    lines = out.splitlines()
    # The stand-in answers `other` with 1/6 for every label: wrong unless the row is `other`.
    right = sum(e.label == "other" for e, _ in rows) / len(rows)
    assert f"expected calibration error={abs(right - 1 / len(TOPICS)):.3f}" in out
    table = lines[lines.index("confusion (rows: gold, columns: predicted)") + 2 :]
    assert [line.split()[0] for line in table] == list(TOPICS)
    counts = {line.split()[0]: [int(n) for n in line.split()[1:]] for line in table}
    for example, _ in rows:  # every row predicted `other`: the last column
        assert counts[example.label][-1] >= 1
    assert sum(map(sum, counts.values())) == len(rows)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--alone", "--documents", "."], ["--alone", "drop --documents"]),
        (["--cv", "3", "--documents", "."], ["--cv", "eval.train_topics"]),
        ([], ["trained on the default labels", "--data"]),
    ],
)
def test_eval_classify_refuses_contradictory_or_training_data_runs(
    monkeypatch, capsys, options, words
):
    code, _, err = _run_cli(monkeypatch, capsys, "eval", "classify", *options)
    assert code != 0
    for word in words:
        assert word in err


def test_classify_cli_reads_rows_that_name_their_file_as_the_index_does(
    monkeypatch, capsys, tmp_path, headed_rows
):
    import json

    import api.cli

    (first, heading), (second, _) = headed_rows[:2]
    loose = load_labelled(DEV_LABELS)[-1]  # a third paragraph, given without its file
    rows = [
        {"text": first.text, "file": first.group},
        {"text": loose.text, "section": "Công tác dân vận"},
        {"text": second.text, "file": second.group, "section": "Tiêu đề riêng"},
    ]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    classifier = RecordingClassifier()
    monkeypatch.setattr(api.cli, "load_classifier", lambda *args, **kwargs: classifier)

    code, out, err = _run_cli(monkeypatch, capsys, "classify", "--input", str(data), "--json")
    assert code == 0 and "2 of 3 rows read within their documents" in err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 3 and all(set(line) == {"topic", "scores"} for line in lines)
    [(alone_texts, alone_sections, no_documents), (texts, sections, documents)] = classifier.calls
    assert (alone_texts, alone_sections, no_documents) == ([loose.text], ["Công tác dân vận"], None)
    # The row without a section gets its paragraph's heading; a given section is kept.
    assert texts[:2] == [first.text, second.text]
    assert sections[:2] == [heading, "Tiêu đề riêng"]
    assert documents[:2] == [first.group, second.group]

    classifier.calls.clear()
    code, out, _ = _run_cli(monkeypatch, capsys, "classify", "--input", str(data), "--alone")
    assert code == 0 and len(out.splitlines()) == 3
    [(texts, sections, documents)] = classifier.calls
    assert sections == ["", "Công tác dân vận", "Tiêu đề riêng"] and documents is None


def test_predict_within_documents_reads_files_outside_the_corpus_alone(headed_rows):
    from models.topics import predict_within_documents

    example = headed_rows[0][0]
    classifier = RecordingClassifier()
    outside = f"../labels/{DEV_LABELS.name}"  # a real file, but not under the corpus folder
    predictions, within = predict_within_documents(
        classifier, [example.text], [""], [outside], SHARED / "corpus"
    )
    assert within == 0 and len(predictions) == 1
    assert classifier.calls == [([example.text], [""], None)]
    with pytest.raises(InvalidInputError, match="one of each per text"):
        predict_within_documents(classifier, [example.text], [], [None], SHARED / "corpus")


def test_a_row_with_markdown_marks_is_found_in_its_document():
    # Rows from Markdown files keep their marks ("**(2)** Xây dựng ..."); the reader drops them.
    from models.topics import markup_free, predict_within_documents
    from nlp.normalize import normalize_text
    from nlp.paragraphs import split_passages
    from nlp.reader import read_document

    for example in load_labelled(DEV_LABELS):
        if "**" not in example.text:
            continue
        passages = split_passages(read_document(SHARED / "corpus" / example.group))
        same = [p for p in passages if normalize_text(p.text) == markup_free(example.text)]
        if same and same[0].section and example.text not in {p.text for p in passages}:
            break
    else:
        raise AssertionError("no dev row with Markdown marks under a heading")
    classifier = RecordingClassifier()
    _, within = predict_within_documents(
        classifier, [example.text], [""], [example.group], SHARED / "corpus"
    )
    [(texts, sections, _)] = classifier.calls
    assert within == 1 and sections[0] == same[0].section
    # The row stands for its passage: the document's paragraphs are not read twice.
    assert len(texts) == len(passages)
    assert same[0].text not in texts[1:]
