"""Shared fixtures: the repository's test images and the servers the integration tests use.

Integration tests need a running InferQ given by ``INFERQ_TEST_URL`` (the
Rust test ``tests/tests/python_client.rs`` starts one and sets it) and are
skipped without it. Optional extras, each skipping its tests when unset:
``INFERQ_TEST_FILE_ROOT`` (a directory the server may read and write through
``file://``), ``INFERQ_TEST_LIMITED_URL`` + ``INFERQ_TEST_API_KEY`` (a server
with API keys on and ``--max-backlog 1`` for the 429 and 401 tests).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

IMAGES = Path(__file__).resolve().parents[3] / "tests" / "images"


@pytest.fixture
def images() -> Path:
    return IMAGES


@pytest.fixture
def url() -> str:
    u = os.environ.get("INFERQ_TEST_URL")
    if not u:
        pytest.skip("INFERQ_TEST_URL not set (no server to test against)")
    return u


@pytest.fixture
def file_root() -> Path:
    r = os.environ.get("INFERQ_TEST_FILE_ROOT")
    if not r:
        pytest.skip("INFERQ_TEST_FILE_ROOT not set (server without file:// access)")
    return Path(r)


@pytest.fixture
def limited() -> tuple[str, str]:
    u, k = os.environ.get("INFERQ_TEST_LIMITED_URL"), os.environ.get("INFERQ_TEST_API_KEY")
    if not (u and k):
        pytest.skip("INFERQ_TEST_LIMITED_URL / INFERQ_TEST_API_KEY not set")
    return u, k
