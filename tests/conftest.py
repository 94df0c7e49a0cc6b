"""Shared test fixtures: the real reference data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ESOCT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; tests that need it skip with a message when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real reference data not found at {SHARED_DATA} (set ESOCT_SHARED_DATA); CI always has it")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch CPU thread in every test: tiny networks on a shared 2-core machine run fastest and
    deterministically that way. Tests without torch installed are unaffected."""
    try:
        import torch
    except ImportError:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
