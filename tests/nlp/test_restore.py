"""Restoring diacritics from a vocabulary learned from real passages."""

from nlp.normalize import fold_accents, normalize_text
from nlp.paragraphs import split_passages
from nlp.reader import read_document
from nlp.restore import DiacriticRestorer
from nlp.segment import segment_texts


def test_restorer_learns_accents_from_real_passages(report_path):
    passages = split_passages(read_document(report_path))
    restorer = DiacriticRestorer.build(segment_texts([p.text for p in passages[8:14]]))
    assert restorer.restore("ky luat dang vien") == "kỷ luật đảng viên"
    assert restorer.restore("to chuc dang xyzzy") == "tổ chức đảng xyzzy"


def test_a_paragraph_typed_without_diacritics_gets_them_back_with_its_punctuation(report_path):
    passages = split_passages(read_document(report_path))
    restorer = DiacriticRestorer.build(segment_texts([p.text for p in passages]))
    [original] = [p.text for p in passages if "thi hành kỷ luật 151 đảng viên" in p.text]
    typed = fold_accents(original)
    restored = normalize_text(restorer.restore_text(typed))
    assert fold_accents(restored) == typed  # only the diacritics changed
    assert "thi hành kỷ luật 151 đảng viên (khiển trách 117 đảng viên" in restored
    words = list(zip(restored.lower().split(), original.lower().split(), strict=True))
    assert sum(a == b for a, b in words) / len(words) > 0.9
    assert restorer.restore_text("Ky luat, dang vien.") == "Kỷ luật, đảng viên."
    assert restorer.restore_text("ky_luat dang_vien") == "kỷ_luật đảng_viên"  # typed joined
