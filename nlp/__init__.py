"""Turn report files into clean, normalised, word-segmented paragraphs."""
