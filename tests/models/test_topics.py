"""Topic classifier: training, predictions, persistence, training data and the shipped model.

The contract tests run against both kinds of model: TF-IDF only, and TF-IDF plus the passage
embeddings of the bundled e5 model (int8 ONNX, loaded once per process).
"""

from __future__ import annotations

import json
import math
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from models.embedder import passage_input
from models.topics import (
    DEFAULT_CONTEXT_WEIGHT,
    FORMAT_VERSION,
    TOPICS,
    LabelledExample,
    TopicClassifier,
    default_training_examples,
    document_contexts,
    document_means,
    example_vectors,
    load_label_references,
    load_labelled,
    report_section_examples,
    shared_embedder,
    text_sha1,
    train_classifier,
    with_document_context,
)
from nlp.errors import InvalidInputError, ModelError
from nlp.normalize import normalize_text
from nlp.paragraphs import split_passages
from nlp.reader import read_document
from nlp.segment import segment_texts

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DEV_LABELS = SHARED / "labels" / "topics-dev.jsonl"
REPORT = SHARED / "corpus" / "reports" / "hai-duong-2022-h1-bao-cao-xay-dung-dang.txt"
PER_LABEL = 8


def _report_passages():
    return split_passages(read_document(REPORT))


def _report_passage(fragment: str):
    [passage] = [p for p in _report_passages() if fragment in p.text]
    return passage


@pytest.fixture(scope="module")
def small_set() -> list[LabelledExample]:
    """A few real dev paragraphs of every label, from several documents."""
    chosen: dict[str, list[LabelledExample]] = {label: [] for label in TOPICS}
    for example in load_labelled(DEV_LABELS):
        if len(chosen[example.label]) < PER_LABEL:
            chosen[example.label].append(example)
    return [example for label in TOPICS for example in chosen[label]]


@pytest.fixture(scope="module")
def embedder():
    return shared_embedder()


@pytest.fixture(scope="module")
def tfidf_model(small_set) -> TopicClassifier:
    return train_classifier(small_set, calibration_folds=2, embedding_weight=0)


@pytest.fixture(scope="module")
def embedding_model(small_set, embedder) -> TopicClassifier:
    return train_classifier(small_set, calibration_folds=2, embedder=embedder)


@pytest.fixture(scope="module")
def context_model(small_set, embedder) -> TopicClassifier:
    # The document of each example is, here, the examples of the same file in the small set.
    own = example_vectors(small_set, embedder)
    contexts = document_means(own, [e.group for e in small_set])[0].astype(np.float32)
    return train_classifier(
        small_set, calibration_folds=2, embedder=embedder, embeddings=own, contexts=contexts
    )


@pytest.fixture(params=["tfidf", "embedding", "context"])
def small_model(request) -> TopicClassifier:
    """Each contract test runs against a TF-IDF-only model, one with embeddings and one that
    also reads a paragraph's document."""
    return request.getfixturevalue(f"{request.param}_model")


def test_a_paragraph_typed_without_diacritics_is_read_with_them(small_model, tmp_path):
    from nlp.normalize import fold_accents

    [text] = [p.text for p in _report_passages() if "thi hành kỷ luật 151 đảng viên" in p.text]
    typed = fold_accents(text)
    assert small_model.restorer is not None
    assert small_model.predict([typed]) == small_model.predict(
        [small_model._with_diacritics(typed)]
    )
    assert small_model._with_diacritics(typed).count("đảng viên") >= 3
    small_model.save(tmp_path / "model")
    loaded = TopicClassifier.load(tmp_path / "model")
    assert loaded.restorer.table == small_model.restorer.table
    assert loaded.predict([typed])[0].topic == small_model.predict([text])[0].topic


def test_predictions_cover_every_label_and_sum_to_one(small_model):
    texts = [p.text for p in _report_passages()[:6]]
    predictions = small_model.predict(texts)
    assert len(predictions) == len(texts)
    for prediction in predictions:
        assert set(prediction.scores) == set(TOPICS)
        assert math.isclose(sum(prediction.scores.values()), 1.0, abs_tol=1e-5)
        assert prediction.topic == max(prediction.scores, key=prediction.scores.get)
        assert all(0.0 <= score <= 1.0 for score in prediction.scores.values())


def test_a_single_string_is_a_batch_of_one(small_model):
    text = _report_passage("thi hành kỷ luật 151 đảng viên").text
    [single] = small_model.predict(text)
    [batched] = small_model.predict([text])
    assert single == batched


def test_precomputed_tokens_and_sections_match_the_segmenting_path(small_model):
    passages = _report_passages()[8:12]
    texts = [p.text for p in passages]
    sections = [p.section for p in passages]
    own = small_model.predict(texts, sections=sections)
    given = small_model.predict(texts, tokens=segment_texts(texts), sections=sections)
    assert own == given


def test_token_count_must_match_texts(small_model):
    with pytest.raises(InvalidInputError, match="one entry per text"):
        small_model.predict(["một đoạn văn", "đoạn thứ hai"], tokens=[["một", "đoạn_văn"]])


def test_embedding_model_names_its_embedder_and_tfidf_model_none(
    embedding_model, tfidf_model, embedder
):
    assert embedding_model.embedding_fingerprint == embedder.fingerprint
    assert embedding_model.embedding_model == embedder.name
    assert embedding_model.info["embedding_weight"] > 0
    assert tfidf_model.embedding_fingerprint is None
    assert tfidf_model.embedding_model is None


def test_precomputed_embeddings_match_the_embedding_path(embedding_model, embedder):
    passages = _report_passages()[20:26]
    texts = [p.text for p in passages]
    sections = [p.section for p in passages]
    own = embedding_model.predict(texts, sections=sections)
    # What the indexer passes: its stored vectors, each passage under its innermost heading.
    inputs = [passage_input(t, s) for t, s in zip(texts, sections, strict=True)]
    given = embedding_model.predict(
        texts, sections=sections, embeddings=embedder.embed_passages(inputs)
    )
    assert [p.topic for p in own] == [p.topic for p in given]
    for a, b in zip(own, given, strict=True):
        assert a.scores == pytest.approx(b.scores, abs=1e-5)


def test_embeddings_must_match_texts(embedding_model, embedder):
    texts = ["Thi hành kỷ luật đảng viên vi phạm", "Công tác dân vận của Mặt trận Tổ quốc"]
    vectors = embedder.embed_passages(texts)
    with pytest.raises(InvalidInputError, match=r"expected \(2, 384\).*or none"):
        embedding_model.predict(texts, embeddings=vectors[:1])
    with pytest.raises(InvalidInputError, match=r"expected \(2, 384\)"):
        embedding_model.predict(texts, embeddings=np.zeros((2, 768), dtype=np.float32))
    with pytest.raises(InvalidInputError, match="NaN"):
        embedding_model.predict(texts, embeddings=np.full((2, 384), np.nan, dtype=np.float32))


def test_tfidf_model_ignores_embeddings(tfidf_model):
    texts = ["Thi hành kỷ luật đảng viên vi phạm"]
    assert tfidf_model.predict(texts, embeddings=np.zeros((1, 384))) == tfidf_model.predict(texts)


def test_dense_fast_path_matches_the_feature_matrix(embedding_model, embedder):
    passages = _report_passages()[30:36]
    texts = [p.text for p in passages]
    sections = [p.section for p in passages]
    tokens = segment_texts(texts)
    vectors = embedder.embed_passages(texts)
    matrix = embedding_model.features(texts, tokens, sections, vectors)
    reference = (matrix @ embedding_model.coef.T + embedding_model.intercept) / (
        embedding_model.temperature
    )
    fast = embedding_model.decision_function(texts, tokens, sections, vectors)
    assert np.allclose(fast, reference, atol=1e-4)


def test_use_embedder_refuses_another_model(embedding_model, tfidf_model, embedder):
    class OtherEmbedder:
        name = "some/other-model"
        fingerprint = "0123456789abcdef"

    with pytest.raises(ModelError, match="fingerprint 0123456789abcdef.*retrain"):
        embedding_model.use_embedder(OtherEmbedder())
    embedding_model.use_embedder(embedder)  # the same model is accepted
    with pytest.raises(ModelError, match="uses no embeddings"):
        tfidf_model.use_embedder(embedder)


def test_format_version_1_models_still_load(tfidf_model, tmp_path):
    target = tmp_path / "model"
    tfidf_model.save(target)
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    manifest["format_version"] = 1
    for key in ("embedding", "embedding_model", "embedding_fingerprint"):
        del manifest[key]
    (target / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    texts = [p.text for p in _report_passages()[:5]]
    assert TopicClassifier.load(target).predict(texts) == tfidf_model.predict(texts)


def test_negative_embedding_weight_is_refused(small_set):
    with pytest.raises(InvalidInputError, match="embedding_weight"):
        train_classifier(small_set, embedding_weight=-1)


def test_save_and_load_give_identical_scores(small_model, tmp_path):
    small_model.save(tmp_path / "model")
    loaded = TopicClassifier.load(tmp_path / "model")
    texts = [p.text for p in _report_passages()[:10]]
    assert loaded.predict(texts) == small_model.predict(texts)
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["labels"] == list(TOPICS)
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["training"]["n_examples"] == len(TOPICS) * PER_LABEL
    assert "sklearn_version" in manifest
    assert manifest["embedding_fingerprint"] == small_model.embedding_fingerprint
    assert manifest["embedding_model"] == small_model.embedding_model
    assert loaded.embedding_fingerprint == small_model.embedding_fingerprint
    # Plain formats only: nothing a user is handed needs pickle to read.
    files = [p for p in (tmp_path / "model").rglob("*") if p.is_file()]
    assert {p.suffix for p in files} == {".json", ".npy"}


def test_saving_over_an_existing_model_replaces_it(small_model, tmp_path):
    target = tmp_path / "model"
    small_model.save(target)
    small_model.save(target)
    assert TopicClassifier.load(target).predict("Tăng cường công tác dân vận")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_missing_model_folder_names_the_fix(tmp_path):
    with pytest.raises(ModelError, match="vnsearch train"):
        TopicClassifier.load(tmp_path / "nowhere")


def test_damaged_model_folder_names_the_fix(small_model, tmp_path):
    target = tmp_path / "model"
    small_model.save(target)
    (target / "coef.npy").unlink()
    with pytest.raises(ModelError, match="damaged topic model.*vnsearch train"):
        TopicClassifier.load(target)
    small_model.save(target)
    (target / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="damaged"):
        TopicClassifier.load(target)


def test_model_with_wrong_shapes_is_refused(small_model, tmp_path):
    target = tmp_path / "model"
    small_model.save(target)
    np.save(target / "coef.npy", np.zeros((6, 3), dtype=np.float32))
    with pytest.raises(ModelError, match="shape"):
        TopicClassifier.load(target)


def test_training_needs_every_label(small_set):
    without_other = [e for e in small_set if e.label != "other"]
    with pytest.raises(InvalidInputError, match="missing: \\['other'\\]"):
        train_classifier(without_other, embedding_weight=0)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "... ; !!! ---",
        unicodedata.normalize("NFD", "Thi hành kỷ luật đảng viên vi phạm"),
        "Thi hanh ky luat dang vien vi pham tu cach dang vien",
        "Cấp uỷ " * 2000,
    ],
    ids=["empty", "punctuation", "nfd", "no-diacritics", "very-long"],
)
def test_golden_edge_cases_give_a_distribution(small_model, text):
    [prediction] = small_model.predict([text])
    assert math.isclose(sum(prediction.scores.values()), 1.0, abs_tol=1e-5)
    assert prediction.topic in TOPICS


def test_nfd_and_tone_mark_styles_do_not_change_the_prediction(small_model):
    nfc = "Hoà giải ở cơ sở và công tác dân vận của Mặt trận Tổ quốc"
    variants = [nfc, unicodedata.normalize("NFD", nfc), nfc.replace("Hoà", "Hòa")]
    scores = [p.scores for p in small_model.predict(variants)]
    assert scores[0] == scores[1] == scores[2]


# ------------------------------------------------------------------------- training data


def test_load_labelled_reads_groups_sections_and_normalises(tmp_path):
    path = tmp_path / "labels.jsonl"
    rows = [
        {"text": "Công tác kiểm tra của Ủy ban Kiểm tra", "label": "inspection", "file": "a.md"},
        {"text": "Mặt trận Tổ quốc", "label": "mass_mobilisation", "doc": "b", "section": "II"},
        {"text": "Phát triển du lịch", "label": "other"},
    ]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
    examples = load_labelled(path)
    assert [e.group for e in examples] == ["a.md", "b", "labels.jsonl:3"]
    assert examples[0].text == normalize_text(rows[0]["text"])
    assert examples[1].section == "II"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "Đoạn văn", "label": "economy"}', "line 2: label 'economy' is not one of"),
        ('{"label": "other"}', "line 2: 'text' must be a non-empty string"),
        ('{"text": "Đoạn văn", "label": "other"', "line 2: not valid JSON"),
        ('["Đoạn văn", "other"]', "line 2: expected a JSON object"),
        ('{"text": "Đoạn văn", "label": "other", "file": 7}', "line 2: 'file' must be a string"),
    ],
)
def test_bad_rows_name_the_line_and_the_fix(tmp_path, line, message):
    path = tmp_path / "labels.jsonl"
    path.write_text('{"text": "Đoạn đầu", "label": "ideology"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=message):
        load_labelled(path)


def test_label_references_resolve_against_the_corpus(tmp_path):
    passage = _report_passage("Hoạt động của ban dân vận các cấp")
    path = tmp_path / "refs.jsonl"
    row = {"file": "reports/" + REPORT.name, "sha1": text_sha1(passage.text)[:16]}
    path.write_text(json.dumps({**row, "label": "mass_mobilisation"}) + "\n")
    [example] = load_label_references(path, SHARED / "corpus")
    assert example.text == normalize_text(passage.text)
    assert example.section == passage.section
    assert example.group == row["file"]
    assert example.source == "own"

    path.write_text(json.dumps({**row, "sha1": "0123456789abcdef", "label": "other"}) + "\n")
    with pytest.raises(InvalidInputError, match="line 1 .*remove these rows"):
        load_label_references(path, SHARED / "corpus")


def test_report_headings_label_the_paragraphs_beneath_them():
    examples = {e.text: e for e in report_section_examples(SHARED / "corpus")}
    dan_van = normalize_text(_report_passage("Hoạt động của ban dân vận các cấp").text)
    assert examples[dan_van].label == "mass_mobilisation"
    front = normalize_text(_report_passage("xây, sửa 41 ngôi nhà đại đoàn kết").text)
    assert examples[front].label == "mass_mobilisation"
    tasks = normalize_text(_report_passage("1. Chỉ đạo sơ, tổng kết kịp thời").text)
    assert tasks not in examples  # part IV has no topic headings
    assert {e.label for e in examples.values()} == set(TOPICS) - {"other"}


def test_default_sources_are_deduplicated_and_dev_labels_win():
    examples = default_training_examples(SHARED)
    texts = [e.text for e in examples]
    assert len(texts) == len(set(texts))
    dev = {normalize_text(e.text): e.label for e in load_labelled(DEV_LABELS)}
    for example in examples:
        if example.text in dev:
            assert example.source == "dev" and example.label == dev[example.text]
    sources = {e.source for e in examples}
    assert sources == {"dev", "own", "report"}
    assert all(e.group for e in examples)


# ------------------------------------------------------------------------- shipped model


def test_shipped_model_classifies_real_paragraphs():
    model = TopicClassifier.load_default()
    assert TopicClassifier.load_default() is model  # cached per process
    assert model.embedding_fingerprint == shared_embedder().fingerprint
    cases = {
        "thi hành kỷ luật 151 đảng viên": "inspection",
        "bảo vệ nền tảng tư tưởng của Đảng": "ideology",
        "xây, sửa 41 ngôi nhà đại đoàn kết": "mass_mobilisation",
        "giải quyết kịp thời các vụ án trọng điểm, án tham nhũng": "anti_corruption",
        "Chỉ đạo rà soát, bổ sung quy hoạch": "organisation",
    }
    passages = [_report_passage(fragment) for fragment in cases]
    predictions = model.predict([p.text for p in passages], sections=[p.section for p in passages])
    assert [p.topic for p in predictions] == list(cases.values())
    # Without section headings the text alone decides.
    text_only = model.predict([p.text for p in passages])
    assert text_only[0].topic == "inspection"


@pytest.mark.parametrize(
    ("file", "fragment", "topic"),
    [
        (
            "laws/Luat-Phong-chong-tham-nhung-322049.txt",
            "b) Thanh tra Bộ thanh tra vụ việc",
            "anti_corruption",
        ),
        (
            "laws/Luat-Mat-tran-to-quoc-Viet-Nam-2015-282378.txt",
            "3. Uỷ ban thường vụ Quốc hội, Chính phủ phối hợp với Đoàn Chủ tịch",
            "mass_mobilisation",
        ),
        ("background/rd-easy-00012985.txt", "dệt thổ cẩm soi bóng xuống hồ", "other"),
    ],
)
def test_shipped_model_on_paragraphs_no_label_points_to(file, fragment, topic):
    # Passages of corpus documents that no training label references.
    [passage] = [
        p for p in split_passages(read_document(SHARED / "corpus" / file)) if fragment in p.text
    ]
    [prediction] = TopicClassifier.load_default().predict(
        [passage.text], sections=[passage.section]
    )
    assert prediction.topic == topic


def test_feature_block_matches_sklearn_tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer

    from models.topics import FeatureBlock, char_document

    texts = [char_document(p.text) for p in _report_passages()]
    reference = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), sublinear_tf=True)
    expected = reference.fit_transform(texts[:30]).toarray()
    vocabulary = sorted(reference.vocabulary_, key=reference.vocabulary_.__getitem__)
    block = FeatureBlock("chars", "char_wb", (2, 4), 1.0, vocabulary, reference.idf_)
    assert np.allclose(block.transform(texts[:30]).toarray(), expected, atol=1e-5)
    held_out = reference.transform(texts[30:]).toarray()
    assert np.allclose(block.transform(texts[30:]).toarray(), held_out, atol=1e-5)
    # Again with every word's n-gram ids cached, and with an empty document among them.
    again = block.transform(["", *texts[30:]]).toarray()
    assert not again[0].any()
    assert np.allclose(again[1:], held_out, atol=1e-5)


def test_document_context_adds_the_document_mean_logits():
    logits = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]], dtype=np.float32)
    mixed = with_document_context(logits, ["a", "a", "b"], weight=0.5)
    np.testing.assert_allclose(mixed[0], [1.0 + 1.0, 0.0 + 0.5])
    np.testing.assert_allclose(mixed[2], [0.0, 4.0])  # alone in its document: unchanged
    with pytest.raises(InvalidInputError, match="document keys"):
        with_document_context(logits, ["a"])


def test_paragraphs_read_within_their_document_change_only_through_it():
    model = TopicClassifier.load_default()
    passages = _report_passages()[:12]
    texts, sections = [p.text for p in passages], [p.section for p in passages]
    alone = model.predict(texts, sections=sections)
    together = model.predict(texts, sections=sections, documents=["report"] * len(texts))
    assert any(a.scores != t.scores for a, t in zip(alone, together, strict=True))
    # One paragraph per document: nothing to read it with, beyond the head's own view of it.
    one_each = model.predict(texts, sections=sections, documents=list(range(len(texts))))
    head = model.context_model or model
    assert [p.topic for p in one_each] == [
        head.labels[i]
        for i in head.decision_function(
            [normalize_text(t) for t in texts], segment_texts(texts), sections
        ).argmax(axis=1)
    ]


def test_a_model_with_a_document_context_reads_the_mean_vector_of_each_document(
    context_model, embedder
):
    head = context_model.context_model
    assert context_model.embedding.context == 0 and head.embedding.context == DEFAULT_CONTEXT_WEIGHT
    width = sum(len(b.vocabulary) for b in head.blocks) + 2 * embedder.dim
    assert head.coef.shape == (len(TOPICS), width)
    passages = _report_passages()[:8]
    texts = [normalize_text(p.text) for p in passages]
    sections = [p.section for p in passages]
    vectors = embedder.embed_passages(
        [passage_input(t, s) for t, s in zip(texts, sections, strict=True)]
    )
    together = context_model.predict(
        texts, sections=sections, embeddings=vectors, documents=["report"] * len(texts)
    )
    mean = np.repeat(vectors.mean(axis=0, keepdims=True), len(texts), axis=0)
    logits = head.decision_function(texts, segment_texts(texts), sections, vectors, context=mean)
    # The head reads the document; the mean logits are added only by a model without one.
    expected = np.exp(logits - logits.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    scores = np.array([[p.scores[label] for label in context_model.labels] for p in together])
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    # Without documents the first head reads each text alone.
    alone = context_model.decision_function(texts, segment_texts(texts), sections, vectors)
    plain = context_model.predict(texts, sections=sections, embeddings=vectors)
    assert [p.topic for p in plain] == [TOPICS[i] for i in alone.argmax(axis=1)]


def test_a_model_with_a_document_context_saves_and_loads(context_model, tmp_path):
    context_model.save(tmp_path / "model")
    loaded = TopicClassifier.load(tmp_path / "model")
    assert loaded.embedding == context_model.embedding
    assert loaded.context_model.embedding == context_model.context_model.embedding
    passages = _report_passages()[:6]
    texts, sections = [p.text for p in passages], [p.section for p in passages]
    documents = ["a", "a", "a", "b", "b", "c"]
    assert loaded.predict(texts, sections=sections, documents=documents) == (
        context_model.predict(texts, sections=sections, documents=documents)
    )
    manifest = json.loads((tmp_path / "model" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["context_model"] == "within_documents"
    head = json.loads(
        (tmp_path / "model" / "within_documents" / "manifest.json").read_text(encoding="utf-8")
    )
    assert head["embedding"]["context"] == DEFAULT_CONTEXT_WEIGHT


def test_the_second_head_shares_the_first_heads_vocabularies(context_model, tmp_path):
    context_model.save(tmp_path / "model")
    head_folder = tmp_path / "model" / "within_documents"
    assert sorted(p.name for p in head_folder.iterdir()) == [
        "coef.npy",
        "intercept.npy",
        "manifest.json",
    ]
    head = json.loads((head_folder / "manifest.json").read_text(encoding="utf-8"))
    assert {f["vocabulary"] for f in head["features"]} == {
        f"../vocabulary_{block.name}.json" for block in context_model.blocks
    }
    loaded = TopicClassifier.load(tmp_path / "model")
    assert all(
        first is second
        for first, second in zip(loaded.blocks, loaded.context_model.blocks, strict=True)
    )
    # Saved again from the loaded model, the layout is the same.
    loaded.save(tmp_path / "again")
    assert not list((tmp_path / "again" / "within_documents").glob("vocabulary_*"))


def test_a_manifest_naming_a_file_outside_the_model_is_refused(small_model, tmp_path):
    small_model.save(tmp_path / "model")
    manifest_path = tmp_path / "model" / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["features"][0]["vocabulary"] = "../../secret.json"
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ModelError, match="damaged topic model.*bad file name"):
        TopicClassifier.load(tmp_path / "model")


def test_document_contexts_average_each_file_and_keep_the_own_vector_otherwise(embedder):
    passages = _report_passages()
    rows = [
        LabelledExample(
            passages[3].text, "organisation", REPORT.relative_to(SHARED / "corpus").as_posix()
        ),
        LabelledExample(passages[9].text, "inspection", "reports/no-such-file.txt"),
    ]
    own = np.eye(2, embedder.dim, dtype=np.float32)
    embedded = []

    def embed(document):
        embedded.append(len(document))
        return embedder.embed_passages([passage_input(p.text, p.section) for p in document])

    contexts = document_contexts(rows, SHARED / "corpus", embed, own)
    expected = embed(passages).mean(axis=0)
    np.testing.assert_allclose(contexts[0], expected, atol=1e-6)
    np.testing.assert_array_equal(contexts[1], own[1])  # no such file: read alone
    assert embedded[0] == len(passages)


def test_document_means_average_rows_by_document():
    rows = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 4.0]])
    means, shared = document_means(rows, ["a", "a", "b"])
    np.testing.assert_allclose(means, [[2.0, 1.0], [2.0, 1.0], [0.0, 4.0]])
    assert shared.tolist() == [True, True, False]
