"""Shared fixtures: real documents from ../shared beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
REPORT = CORPUS / "reports" / "hai-duong-2022-h1-bao-cao-xay-dung-dang.txt"


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(
            f"{CORPUS} is missing: tests read real documents from ../shared beside the repo"
        )
    return CORPUS


@pytest.fixture(scope="session")
def report_path(corpus_dir: Path) -> Path:
    return REPORT
