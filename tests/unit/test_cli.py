"""The command line's error handling, in process: what is expected prints one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from lstm_pipeline import cli, status
from lstm_pipeline.errors import NotEnoughData


def status_failing_with(exc: Exception, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Result:
    """``lstm-pipeline status`` when rendering the status raises ``exc``."""

    def failing(cfg: object) -> str:
        raise exc

    monkeypatch.setattr(status, "render_status", failing)
    monkeypatch.setattr(cli, "LOG_FILE", tmp_path / "cli.log")
    (tmp_path / "lake").mkdir()
    return CliRunner().invoke(cli.app, ["status", "--root", str(tmp_path / "lake")])


def test_an_unexpected_error_keeps_its_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = status_failing_with(ZeroDivisionError("a bug, not bad input"), tmp_path, monkeypatch)
    assert result.exit_code == 1
    assert "Traceback" in result.output and "ZeroDivisionError: a bug, not bad input" in result.output


def test_an_expected_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = status_failing_with(NotEnoughData("the lake holds nothing"), tmp_path, monkeypatch)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("error:")] == [
        f"error: the lake holds nothing (details: {tmp_path / 'cli.log'})"]
