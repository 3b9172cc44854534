"""Expected failures at the command line: one clear line on stderr, exit 1, no traceback.

Run as a user runs them: the ``lstm-pipeline`` console script in a process of its own.
Flow commands run against a real ``prefect server``; the traceback of each failure goes
to the log file only (``--verbose`` shows it), and an unexpected error still shows one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lstm_pipeline.lake.tables import SERIES, Lake
from lstm_pipeline.shell import services
from tests.conftest import trend_seasonal
from tests.e2e.conftest import PrefectServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("lstm-pipeline"))


def cli(tmp: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**services.clean_env(), "LSTM_PIPELINE_LOG_FILE": str(tmp / "cli.log"), **(env or {})}
    return subprocess.run([CLI, *args], env=full, cwd=tmp, capture_output=True, text=True, check=False, timeout=600)


def one_clear_line(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert done.returncode == code, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr + done.stdout, done.stderr[-4000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    return errors[0]


@pytest.fixture
def env(prefect_server: PrefectServer, tmp_path: Path) -> dict[str, str]:
    return {**prefect_server.env, "LSTM_PIPELINE_LAKE__ROOT": str(tmp_path / "lake")}


def test_an_unreadable_file_names_the_file_and_lands_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 this is not really parquet")
    line = one_clear_line(cli(tmp_path, "ingest", str(bad), env=env))
    assert f"{bad}: cannot be read as a Parquet table" in line
    assert Lake(tmp_path / "lake").version(SERIES) is None
    # The log file has the whole story.
    assert "Traceback" in (tmp_path / "cli.log").read_text()


def test_a_missing_column_names_the_file_and_the_column(tmp_path: Path, env: dict[str, str]) -> None:
    src = tmp_path / "no_target.csv"
    src.write_text("unique_id,ds,value\na,2020-01-01,1\n", encoding="utf-8")
    line = one_clear_line(cli(tmp_path, "ingest", str(src), env=env))
    assert str(src) in line and "'y'" in line


def test_verbose_shows_the_traceback_of_an_expected_failure(tmp_path: Path, env: dict[str, str]) -> None:
    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 nope")
    done = cli(tmp_path, "--verbose", "ingest", str(bad), env=env)
    assert done.returncode == 1 and "Traceback" in done.stderr


def test_training_or_forecasting_an_empty_lake_says_to_ingest_first(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "lake").mkdir()
    for command in ("train", "forecast"):
        line = one_clear_line(cli(tmp_path, command, env=env))
        assert "holds no series yet: ingest data first" in line


def test_an_unreachable_mlflow_is_one_line_after_a_bounded_wait(tmp_path: Path, env: dict[str, str]) -> None:
    src = tmp_path / "data.csv"
    trend_seasonal(n_series=2, n=48).to_csv(src, index=False)
    assert cli(tmp_path, "ingest", str(src), env=env).returncode == 0
    down = {**env, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{services.free_port()}",
            "LSTM_PIPELINE_REGISTRY__MAX_WAIT_S": "4", "LSTM_PIPELINE_REGISTRY__REQUEST_TIMEOUT_S": "2"}
    line = one_clear_line(cli(tmp_path, "train", env=down))
    assert "MLflow at http://127.0.0.1" in line and "gave up after" in line


def test_an_unreachable_prefect_api_is_one_line(tmp_path: Path) -> None:
    src = tmp_path / "data.csv"
    trend_seasonal(n_series=2, n=48).to_csv(src, index=False)
    dead = services.clean_env({"PREFECT_API_URL": f"http://127.0.0.1:{services.free_port()}/api"})
    line = one_clear_line(cli(tmp_path, "ingest", str(src), "--root", str(tmp_path / "lake"), env=dead))
    assert "Prefect API" in line and "cannot be reached" in line


def test_an_invalid_setting_names_the_field(tmp_path: Path) -> None:
    bad = services.clean_env({"LSTM_PIPELINE_MODEL__HIDDEN_SIZE": "0"})
    line = one_clear_line(cli(tmp_path, "train", "--root", str(tmp_path / "lake"), env=bad))
    assert "invalid configuration: model.hidden_size" in line and "greater than or equal to 1" in line


def test_an_unknown_option_value_is_a_usage_error(tmp_path: Path) -> None:
    done = cli(tmp_path, "train", "--mode", "sometimes", "--root", str(tmp_path / "lake"), env=services.clean_env())
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "sometimes" in done.stderr and "auto" in done.stderr


def test_a_config_file_that_is_not_a_mapping_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text("- just\n- a list\n")
    line = one_clear_line(cli(tmp_path, "status", "--config", str(config), "--root", str(tmp_path / "lake")))
    assert "pipeline.yaml: expected a mapping of sections" in line


def test_a_yaml_syntax_error_is_one_line_naming_the_file_line_and_column(tmp_path: Path) -> None:
    config = tmp_path / "pipeline.yaml"
    config.write_text("model:\n  hidden_size: 32\n bad: [1\n")
    line = one_clear_line(cli(tmp_path, "train", "--config", str(config), "--root", str(tmp_path)))
    assert f"{config}, line 3, column 2: invalid YAML" in line


def test_a_missing_file_is_one_line_before_prefect_starts(tmp_path: Path) -> None:
    done = cli(tmp_path, "run", str(tmp_path / "nope.csv"), "--flow-run", "--root", str(tmp_path / "lake"),
               env={"PREFECT_HOME": str(tmp_path / "prefect")})
    line = one_clear_line(done)
    assert f"{tmp_path / 'nope.csv'}: no such file or directory" in line
    assert "Warning" not in done.stderr and not (tmp_path / "lake").exists()
    assert not (tmp_path / "prefect").exists()  # the temporary API never started


def test_status_refuses_a_lake_root_that_does_not_exist(tmp_path: Path) -> None:
    line = one_clear_line(cli(tmp_path, "status", "--root", str(tmp_path / "typo")))
    assert f"the lake root {tmp_path / 'typo'} does not exist" in line
    assert not (tmp_path / "typo").exists()
