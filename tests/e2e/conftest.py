"""Fixtures every end-to-end test module can use."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DATA_DIR shared by every stack of the session, so the ONNX model is built once."""
    return tmp_path_factory.mktemp("data")
