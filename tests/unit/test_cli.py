"""The command line's error handling, in process: what is expected prints one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from lstm_pipeline.config import load_config
from lstm_pipeline.errors import NotEnoughData
from lstm_pipeline.shell import cli
from lstm_pipeline.stages import status
from lstm_pipeline.stages.runs import _DONE


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


def test_help_reads_as_plain_text() -> None:
    for args in ([], ["run"], ["ingest"], ["train"], ["status"]):
        text = CliRunner().invoke(cli.app, [*args, "--help"], terminal_width=80).output
        assert "``" not in text and "<bool>" not in text and "<list[str]>" not in text, text
        assert all(len(line) <= 80 for line in text.splitlines()), text


def test_verbose_is_accepted_before_or_after_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "LOG_FILE", tmp_path / "cli.log")
    for args in (["--verbose", "status"], ["status", "--verbose"], ["status", "-v", "--root", str(tmp_path / "no")]):
        result = CliRunner().invoke(cli.app, args)
        assert "No such option" not in result.output and cli._state["verbose"] is True, result.output
        cli._state["verbose"] = False


def test_a_lake_root_that_does_not_exist_is_refused_and_not_created(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "LOG_FILE", tmp_path / "cli.log")
    for command in ("status", "train", "forecast", "monitor"):
        result = CliRunner().invoke(cli.app, [command, "--root", str(tmp_path / "typo")])
        assert result.exit_code == 1
        assert f"error: the lake root {tmp_path / 'typo'} does not exist" in result.output
    assert not (tmp_path / "typo").exists()


def test_a_missing_source_is_one_line_before_any_work_and_creates_no_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "LOG_FILE", tmp_path / "cli.log")
    for command in ("ingest", "run"):
        result = CliRunner().invoke(cli.app, [command, str(tmp_path / "nope.csv"), "--root", str(tmp_path / "lake"),
                                              "--flow-run"])
        assert result.exit_code == 1
        assert [line for line in result.output.splitlines() if line.startswith("error:")] == [
            f"error: {tmp_path / 'nope.csv'}: no such file or directory (details: {tmp_path / 'cli.log'})"]
    assert not (tmp_path / "lake").exists()
    assert "temporary server" not in (tmp_path / "cli.log").read_text()  # Prefect never started


def test_run_without_a_source_ingests_the_sample_only_into_the_default_lake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "LOG_FILE", tmp_path / "cli.log")
    monkeypatch.delenv(cli.LANDING_ENV, raising=False)
    elsewhere = load_config(overrides={"lake": {"root": str(tmp_path / "lake")}}, environ={})
    assert cli._run_sources(elsewhere, [], sample=False) == []
    assert cli._run_sources(elsewhere, [], sample=True) == [str(cli.SAMPLE)]
    monkeypatch.setenv(cli.LANDING_ENV, f"{tmp_path}/incoming/*.csv")
    assert cli._run_sources(elsewhere, [], sample=False) == [f"{tmp_path}/incoming/*.csv"]
    monkeypatch.chdir(tmp_path)
    assert cli._run_sources(load_config(environ={}), [], sample=False) == [str(cli.SAMPLE)]  # data/lake
    assert cli._run_sources(load_config(overrides={"lake": {"root": "./data/lake/"}}, environ={}), [],
                            sample=False) == [str(cli.SAMPLE)]


def test_the_pipeline_stage_line_names_a_baseline_by_name() -> None:
    done = _DONE["forecast"]({"rows": 588, "model_name": "baseline", "model_version": "seasonal_naive"})
    assert done == "588 rows from baseline seasonal_naive"
    assert _DONE["forecast"]({"rows": 12, "model_name": "lstm-forecaster", "model_version": "3"}) == \
        "12 rows from lstm-forecaster v3"
