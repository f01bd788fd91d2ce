import docx
import pytest

from nlp.errors import DocumentReadError
from nlp.paragraphs import split_passages
from nlp.reader import RawDocument, ReadFailure, read_document, read_paths


@pytest.fixture()
def real_paragraphs(report_path):
    return [p.text for p in split_passages(read_document(report_path))[8:12]]


def test_mixed_folder_reports_bad_files_and_keeps_the_rest(tmp_path, report_path, real_paragraphs):
    (tmp_path / "good.txt").write_text("\n\n".join(real_paragraphs), encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "also-good.md").write_text("# Tiêu đề\n\n" + real_paragraphs[0])
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02PK\x03\x04" * 100)
    (tmp_path / "legacy.txt").write_bytes(real_paragraphs[1].encode("cp1258", errors="replace"))
    (tmp_path / "windows.txt").write_bytes(real_paragraphs[2].encode("utf-16"))
    (tmp_path / "notes.xyz").write_text("ignored inside folders")
    results = list(read_paths([tmp_path]))
    failures = {r.path.rsplit("/", 1)[-1]: r.error for r in results if isinstance(r, ReadFailure)}
    docs = [r for r in results if isinstance(r, RawDocument)]
    assert sorted(failures) == ["binary.txt", "empty.txt", "legacy.txt"]
    assert "empty" in failures["empty.txt"]
    assert "binary" in failures["binary.txt"]
    assert "UTF-8" in failures["legacy.txt"]
    assert len(docs) == 3
    windows = next(d for d in docs if d.path.endswith("windows.txt"))
    assert windows.text == real_paragraphs[2]
    good = next(d for d in docs if d.path.endswith("good.txt"))
    assert [p.text for p in split_passages(good)] == real_paragraphs


def test_non_utf8_legacy_encoding_named(tmp_path, real_paragraphs):
    path = tmp_path / "cp1258.txt"
    path.write_bytes(real_paragraphs[0].encode("cp1258", errors="replace"))
    with pytest.raises(DocumentReadError, match="re-save the file as UTF-8"):
        read_document(path)


def test_text_size_limit_names_the_fix_and_can_be_raised(tmp_path, real_paragraphs, monkeypatch):
    path = tmp_path / "long.txt"
    path.write_text("\n\n".join(real_paragraphs), encoding="utf-8")
    monkeypatch.setenv("VNSEARCH_MAX_TEXT_MB", str(path.stat().st_size / 2 / 2**20))
    with pytest.raises(DocumentReadError, match="split it into smaller files"):
        read_document(path)
    monkeypatch.setenv("VNSEARCH_MAX_TEXT_MB", "1")
    assert read_document(path).text.startswith(real_paragraphs[0][:40])


def test_unsupported_file_named_directly_is_reported(tmp_path):
    path = tmp_path / "report.odt"
    path.write_text("x")
    [failure] = list(read_paths([path]))
    assert isinstance(failure, ReadFailure) and "unsupported" in failure.error


def test_docx_round_trip(tmp_path, real_paragraphs):
    document = docx.Document()
    document.add_heading("3. Công tác kiểm tra, giám sát và thi hành kỷ luật Đảng", level=2)
    for text in real_paragraphs:
        document.add_paragraph(text)
    path = tmp_path / "report.docx"
    document.save(path)
    passages = split_passages(read_document(path))
    assert [p.text for p in passages] == real_paragraphs
    assert passages[0].section == "3. Công tác kiểm tra, giám sát và thi hành kỷ luật Đảng"


def test_truncated_docx_is_reported(tmp_path, real_paragraphs):
    document = docx.Document()
    document.add_paragraph(real_paragraphs[0])
    path = tmp_path / "broken.docx"
    document.save(path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DocumentReadError, match="docx"):
        read_document(path)


def test_pdf_round_trip(tmp_path, real_paragraphs):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    text = real_paragraphs[0][:80].strip()
    path = tmp_path / "report.pdf"
    with PdfPages(path) as pdf:
        figure = Figure(figsize=(8.3, 11.7))
        figure.text(0.05, 0.9, text, fontsize=9, family="DejaVu Sans")
        pdf.savefig(figure)
    assert read_document(path).text == text


def test_truncated_pdf_is_reported(tmp_path):
    path = tmp_path / "broken.pdf"
    path.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog")
    with pytest.raises(DocumentReadError, match="pdf"):
        read_document(path)


def test_symlink_loop_does_not_recurse(tmp_path, real_paragraphs):
    (tmp_path / "a.txt").write_text(real_paragraphs[0])
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    docs = [r for r in read_paths([tmp_path]) if isinstance(r, RawDocument)]
    assert len(docs) == 1
