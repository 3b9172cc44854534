"""Monitoring against a real lake and MLflow registry: forecasts, then the actuals arrive.

One scenario (train once, it is the slow part): 96 months of 8 series are ingested, a
champion is trained and forecasts months 97-108; then the actuals of months 97-102 arrive
and the monitor scores them, then the rest arrive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lstm_pipeline.config import PipelineConfig, load_config
from lstm_pipeline.evaluate.metrics import mase_scale
from lstm_pipeline.lake.tables import ACCURACY, FORECASTS, Lake
from lstm_pipeline.registry.tracking import CHAMPION, Registry, VersionInfo
from lstm_pipeline.shell.cli import app
from lstm_pipeline.stages import steps
from lstm_pipeline.stages.monitor import ACCURACY_KEYS, MonitorOutcome, run_monitor
from lstm_pipeline.stages.policy import choose_training
from tests.conftest import trend_seasonal

pytestmark = pytest.mark.slow

N_SERIES, HORIZON = 8, 12


@dataclass
class Scenario:
    cfg: PipelineConfig
    lake: Lake
    data: pd.DataFrame  # all 108 months
    first_forecasts: pd.DataFrame  # the vintage issued after month 96
    before_actuals: MonitorOutcome  # monitor with no actual yet
    first: MonitorOutcome  # after months 97-102 arrived
    accuracy_first: pd.DataFrame
    champion_first: VersionInfo
    again: MonitorOutcome  # the same monitor run once more
    accuracy_version_after_again: int | None
    second_vintage: steps.ForecastOutcome
    forecasts_version_before_rerun: int | None
    rerun: steps.ForecastOutcome
    forecasts_after_rerun: pd.DataFrame
    last: MonitorOutcome  # after months 103-108 arrived
    accuracy_last: pd.DataFrame


def _cfg(root: Path) -> PipelineConfig:
    return load_config(overrides={
        "lake": {"root": str(root)},
        "window": {"lookback": 24, "horizon": HORIZON},
        "model": {"hidden_size": 16, "num_layers": 1, "dropout": 0.0},
        "train": {"max_epochs": 6, "patience": 4, "batch_size": 64, "ensemble": 1},
        "backtest": {"n_windows": 1, "step": 12, "statistical_baselines": False},
        # The LSTM alone against the naive baselines: AutoETS fits these synthetic series
        # almost exactly, and monitoring, not the gate, is under test here.
        "combine": {"members": ["lstm"]},
    }, environ={})


def _csv(frame: pd.DataFrame, path: Path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    tmp = tmp_path_factory.mktemp("monitor")
    cfg = _cfg(tmp / "lake")
    lake = Lake(cfg.lake.root)
    data = trend_seasonal(n_series=N_SERIES, n=108)
    ds = pd.to_datetime(data["ds"])
    months = sorted(ds.unique())

    steps.run_ingest(cfg, [_csv(data[ds <= months[95]], tmp / "history.csv")])
    trained = steps.run_training(cfg)
    assert trained.promotion is not None and trained.promotion.promote, trained.summary()
    steps.run_forecast(cfg)
    first_forecasts = lake.read(FORECASTS)
    before = run_monitor(cfg)

    steps.run_ingest(cfg, [_csv(data[(ds > months[95]) & (ds <= months[101])], tmp / "six_months.csv")])
    first = run_monitor(cfg)
    accuracy_first = lake.read(ACCURACY)
    champion = Registry(cfg.registry, cfg.lake.root).version(CHAMPION)
    assert champion is not None
    again = run_monitor(cfg)
    accuracy_version = lake.version(ACCURACY)

    second_vintage = steps.run_forecast(cfg)  # cutoff month 102, same champion
    forecasts_version = lake.version(FORECASTS)
    rerun = steps.run_forecast(cfg)
    forecasts_after = lake.read(FORECASTS)

    steps.run_ingest(cfg, [_csv(data[ds > months[101]], tmp / "rest.csv")])
    last = run_monitor(cfg)
    return Scenario(
        cfg, lake, data.assign(ds=ds), first_forecasts, before, first, accuracy_first, champion, again,
        accuracy_version, second_vintage, forecasts_version, rerun, forecasts_after, last, lake.read(ACCURACY),
    )


def _expected_errors(forecasts: pd.DataFrame, data: pd.DataFrame, until: int, season: int = 12) -> pd.DataFrame:
    """Realised errors worked out independently of the monitor module, actuals up to month ``until``."""
    data = data[data["ds"] <= sorted(data["ds"].unique())[until - 1]]
    joined = forecasts.merge(data[["unique_id", "ds", "y"]], on=["unique_id", "ds"])
    joined["abs_error"] = (joined["y"] - joined["yhat"]).abs()
    scales = {
        (uid, cutoff): mase_scale(data[(data["unique_id"] == uid) & (data["ds"] <= cutoff)]["y"].to_numpy(), season)
        for uid, cutoff in joined[["unique_id", "cutoff"]].drop_duplicates().itertuples(index=False)
    }
    joined["scale"] = [scales[(u, c)] for u, c in zip(joined["unique_id"], joined["cutoff"])]
    joined["scaled_error"] = joined["abs_error"] / joined["scale"]
    return joined


def _by_key(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(ACCURACY_KEYS).reset_index(drop=True)


def test_nothing_is_scored_before_any_actual_arrives(scenario: Scenario) -> None:
    assert (scenario.before_actuals.realised, scenario.before_actuals.inserted) == (0, 0)
    assert scenario.before_actuals.pending == N_SERIES * HORIZON
    assert scenario.before_actuals.recorded == ()
    assert scenario.before_actuals.table_version == -1  # no accuracy table until a row is realised


def test_accuracy_holds_the_realised_errors_of_the_forecasts_whose_actuals_arrived(scenario: Scenario) -> None:
    got = _by_key(scenario.accuracy_first)
    want = _by_key(_expected_errors(scenario.first_forecasts, scenario.data, until=102))

    # Six of the twelve months arrived: six realised steps per series, the rest pending.
    assert len(got) == N_SERIES * 6
    assert sorted(got["step"].unique()) == [1, 2, 3, 4, 5, 6]
    assert (scenario.first.realised, scenario.first.inserted, scenario.first.pending) == (48, 48, 48)
    pd.testing.assert_frame_equal(
        got[ACCURACY_KEYS].astype({"cutoff": "datetime64[us]", "ds": "datetime64[us]"}),
        want[ACCURACY_KEYS].astype({"cutoff": "datetime64[us]", "ds": "datetime64[us]"}), check_dtype=False,
    )
    np.testing.assert_array_equal(got["y"], want["y"])
    np.testing.assert_array_equal(got["yhat"], want["yhat"])
    np.testing.assert_array_equal(got["abs_error"], (want["y"] - want["yhat"]).abs())
    np.testing.assert_allclose(got["scaled_error"], want["scaled_error"], rtol=1e-12)
    assert set(got["model_version"]) == {scenario.champion_first.version}


def test_a_second_monitor_run_writes_nothing_new(scenario: Scenario) -> None:
    again = scenario.again
    assert (again.realised, again.inserted, again.updated) == (48, 0, 0)
    assert again.recorded == ()  # the registry already holds these numbers
    assert scenario.accuracy_version_after_again == again.table_version == scenario.first.table_version


def test_the_champion_carries_its_live_mase_and_the_policy_sees_it(scenario: Scenario) -> None:
    errors = _expected_errors(scenario.first_forecasts, scenario.data, until=102)
    per_forecast = errors.groupby(["unique_id", "cutoff"])["abs_error"].mean() / errors.groupby(
        ["unique_id", "cutoff"])["scale"].first()
    expected = float(per_forecast.mean())
    champion = scenario.champion_first

    assert scenario.first.recorded == (champion.version,)
    assert float(champion.tags["live_mase"]) == pytest.approx(expected, rel=1e-5)
    assert champion.tags["live_n_points"] == "48"
    facts = champion.facts()
    assert facts.live_mase == pytest.approx(expected, rel=1e-5)
    # The policy (degradation ratio 1.5) acts on the live figure read from the tags.
    now, new_data = datetime.now(UTC), facts.data_version + 1
    degraded = replace(facts, backtest_mase=facts.live_mase / 2)
    decision = choose_training("auto", degraded, new_data, facts.config_hash, scenario.cfg.policy, now)
    assert decision.action == "retrain" and f"live MASE {facts.live_mase:.3f}" in decision.reason
    steady = replace(facts, backtest_mase=facts.live_mase)
    assert choose_training("auto", steady, new_data, facts.config_hash, scenario.cfg.policy, now).action == "finetune"


def test_the_live_metrics_are_logged_in_the_versions_training_run(scenario: Scenario) -> None:
    registry = Registry(scenario.cfg.registry, scenario.cfg.lake.root)
    champion = scenario.champion_first
    history = registry.client.get_metric_history(champion.run_id, "live_mase")

    # Step = realised points: 48 after six months; 144 once vintage 1 is complete (96) and
    # vintage 2 has six months (48).
    assert [m.step for m in history] == [48, 144]
    assert history[0].value == pytest.approx(float(champion.tags["live_mase"]), rel=1e-5)


def test_rerunning_a_forecast_for_the_same_cutoff_and_version_replaces_instead_of_duplicating(
    scenario: Scenario,
) -> None:
    archive = scenario.forecasts_after_rerun
    assert scenario.rerun.table_version == scenario.forecasts_version_before_rerun  # nothing to write
    assert not archive.duplicated(["unique_id", "cutoff", "ds", "model_version"]).any()
    assert len(archive) == N_SERIES * HORIZON * 2


def test_every_vintage_stays_so_one_target_date_is_compared_across_cutoffs(scenario: Scenario) -> None:
    archive = scenario.forecasts_after_rerun
    months = sorted(scenario.data["ds"].unique())
    assert sorted(archive["cutoff"].unique()) == [months[95], months[101]]
    # Month 108 was forecast 12 steps ahead from month 96 and 6 steps ahead from month 102.
    target = archive[archive["ds"] == months[107]]
    assert target.groupby("unique_id")["step"].apply(sorted).tolist() == [[6, 12]] * N_SERIES
    # The first vintage is untouched by the second.
    first = scenario.first_forecasts.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    kept = archive[archive["cutoff"] == months[95]].sort_values(["unique_id", "ds"]).reset_index(drop=True)
    np.testing.assert_array_equal(kept["yhat"], first["yhat"])


def test_later_actuals_score_both_vintages_and_keep_earlier_rows(scenario: Scenario) -> None:
    last = _by_key(scenario.accuracy_last)
    want = _by_key(_expected_errors(scenario.forecasts_after_rerun, scenario.data, until=108))

    assert len(last) == N_SERIES * (HORIZON + 6)  # all of vintage 1, six steps of vintage 2
    assert scenario.last.inserted == N_SERIES * (6 + 6) and scenario.last.pending == N_SERIES * 6
    np.testing.assert_array_equal(last["abs_error"], (want["y"] - want["yhat"]).abs())
    earlier = last.merge(scenario.accuracy_first[ACCURACY_KEYS + ["abs_error"]], on=ACCURACY_KEYS,
                         suffixes=("", "_first"))
    assert len(earlier) == 48 and (earlier["abs_error"] == earlier["abs_error_first"]).all()


def test_status_shows_tables_models_latest_cutoff_and_live_accuracy(scenario: Scenario) -> None:
    cfg, lake = scenario.cfg, scenario.lake
    result = CliRunner().invoke(app, ["status", "--root", cfg.lake.root])

    assert result.exit_code == 0, result.output
    text = result.output
    lines = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("  ") and line.split()}
    for table in ("series", "batches", "forecasts", "accuracy"):
        assert lines[table][1:3] == [str(lake.version(table)), str(len(lake.read(table)))], text
    assert lines["quarantine"][1:3] == ["-", "-"]
    champion = Registry(cfg.registry, cfg.lake.root).version(CHAMPION)
    assert champion is not None
    assert f"champion   v{champion.version}" in text
    assert f"backtest_mase={champion.tags['backtest_mase']}" in text
    assert f"live_mase={champion.tags['live_mase']}" in text
    months = sorted(scenario.data["ds"].unique())
    assert f"latest cutoff {months[101].date()} (2 cutoffs archived)" in text
    # Live accuracy per version: all 18 realised steps of 8 series, 16 forecasts.
    live_line = next(line for line in text.splitlines() if line.strip().startswith(champion.version + " "))
    assert live_line.split()[1:3] == ["16", str(N_SERIES * 18)]
    assert math.isfinite(float(live_line.split()[4]))
