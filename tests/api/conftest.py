"""API fixtures: one app per module over the session's `searcher` and `classifier`."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import create_app


@pytest.fixture(scope="module")
def client(searcher, classifier):
    with TestClient(create_app(searcher=searcher, classifier=classifier)) as test_client:
        yield test_client
