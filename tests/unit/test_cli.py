"""The command line's error handling, in process: what is expected prints one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lstm_pipeline import cli, status


def test_an_unexpected_error_keeps_its_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(cfg: object) -> str:
        raise ZeroDivisionError("a bug, not bad input")

    monkeypatch.setattr(status, "render_status", broken)
    monkeypatch.setattr(cli, "LOG_FILE", tmp_path / "cli.log")
    result = CliRunner().invoke(cli.app, ["status", "--root", str(tmp_path / "lake")])
    assert result.exit_code == 1
    assert "Traceback" in result.output and "ZeroDivisionError: a bug, not bad input" in result.output


def test_an_expected_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lstm_pipeline.errors import NotEnoughData

    def empty(cfg: object) -> str:
        raise NotEnoughData("the lake holds nothing")

    monkeypatch.setattr(status, "render_status", empty)
    monkeypatch.setattr(cli, "LOG_FILE", tmp_path / "cli.log")
    result = CliRunner().invoke(cli.app, ["status", "--root", str(tmp_path / "lake")])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert [line for line in result.output.splitlines() if line.startswith("error:")] == [
        f"error: the lake holds nothing (details: {tmp_path / 'cli.log'})"]
