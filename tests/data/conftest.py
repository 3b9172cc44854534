"""Fixtures for tests against real Delta tables in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from lstm_pipeline.lake import Lake


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path / "lake")
