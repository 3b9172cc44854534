"""The forecast picture: which series it draws, which forecast, and a real PNG from a Delta lake."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from lstm_pipeline.errors import NotEnoughData, PipelineError
from lstm_pipeline.shell import cli
from lstm_pipeline.stages.forecast_plot import (
    Choice,
    choose_series,
    draw_forecasts,
    latest_vintage,
    live_errors,
    plot_forecasts,
)
from lstm_pipeline.lake.tables import ACCURACY, FORECASTS, SERIES, Lake

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LEVELS = {"a": 10.0, "b": 20.0, "bad": 30.0, "big": 1000.0, "c": 15.0}


def history(end: str = "2021-09-01") -> pd.DataFrame:
    ds = pd.date_range("2018-01-01", end, freq="MS")
    t = np.arange(len(ds))
    return pd.concat([
        pd.DataFrame({"unique_id": uid, "ds": ds, "y": level + level / 10 * np.sin(2 * np.pi * t / 12)})
        for uid, level in LEVELS.items()
    ], ignore_index=True)


def forecasts(cutoff: str, version: str, created: str, *, bands: bool = True) -> pd.DataFrame:
    ds = pd.date_range(pd.Timestamp(cutoff) + pd.offsets.MonthBegin(1), periods=12, freq="MS")
    frames = []
    for uid, level in LEVELS.items():
        f = pd.DataFrame({"unique_id": uid, "ds": ds, "cutoff": pd.Timestamp(cutoff),
                          "step": np.arange(1, 13, dtype="int32"), "yhat": level})
        if bands:
            for k, level_pct in ((1.0, 80), (2.0, 95)):
                f[f"yhat_lo_{level_pct}"] = level - k * np.arange(1, 13)
                f[f"yhat_hi_{level_pct}"] = level + k * np.arange(1, 13)
        frames.append(f)
    out = pd.concat(frames, ignore_index=True)
    return out.assign(model_name="lstm-forecaster", model_version=version, run_id="r" + version,
                      created_at=pd.Timestamp(created))


def accuracy(worst: str) -> pd.DataFrame:
    rows = [{"unique_id": uid, "cutoff": pd.Timestamp("2020-12-01"), "ds": pd.Timestamp("2021-01-01"),
             "model_version": "1", "step": 1, "model_name": "lstm-forecaster", "y": 1.0, "yhat": 1.0,
             "abs_error": 1.0, "scale": 1.0, "scaled_error": 3.0 if uid == worst else 0.5} for uid in LEVELS]
    return pd.DataFrame(rows)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    """A lake written by the library: series to 2021-09, forecasts from 2020-12 and 2021-06."""
    lake = Lake(tmp_path / "lake")
    lake.upsert(SERIES, history(), keys=["unique_id", "ds"])
    lake.append(FORECASTS, forecasts("2020-12-01", "1", "2021-01-02"))
    newer = forecasts("2021-06-01", "2", "2021-07-02")
    # Some rows of the newest vintage have no bounds (a series without a scale): drawn without a band.
    newer.loc[newer["step"] > 9, ["yhat_lo_95", "yhat_hi_95"]] = np.nan
    lake.append(FORECASTS, newer)
    lake.upsert(ACCURACY, accuracy(worst="bad"), keys=["unique_id", "cutoff", "ds", "model_version"])
    return lake


def test_the_choice_is_the_worst_error_the_largest_and_a_seeded_random_one() -> None:
    errors = pd.Series({"a": 0.4, "bad": 2.5, "b": np.nan})
    chosen = choose_series(history(), errors, count=3, seed=7)
    assert [c.unique_id for c in chosen[:2]] == ["bad", "big"]
    assert chosen[0].reason.startswith("worst error (mean scaled error 2.50)") and chosen[1].reason.startswith("largest")
    assert chosen[2].unique_id in {"a", "b", "c"}
    assert choose_series(history(), errors, count=3, seed=7) == chosen  # reproducible
    draws = {choose_series(history(), errors, count=3, seed=s)[2].unique_id for s in range(20)}
    assert draws == {"a", "b", "c"}  # the random one is drawn from the rest only


def test_the_choice_without_errors_and_with_few_series() -> None:
    assert [c.unique_id for c in choose_series(history(), None, count=1)] == ["big"]
    only = choose_series(history(), pd.Series(dtype="float64"), count=5, among=["a", "big"])
    assert [c.unique_id for c in only] == ["big", "a"]
    assert choose_series(history(), None, count=3, among=[]) == []


def test_live_errors_are_mean_scaled_errors_per_series() -> None:
    acc = pd.DataFrame({"unique_id": ["a", "a", "b", "c"], "scaled_error": [1.0, 2.0, 0.5, np.nan]})
    assert live_errors(acc).to_dict() == {"a": 1.5, "b": 0.5}
    assert live_errors(pd.DataFrame()).empty


def test_the_latest_vintage_is_the_newest_cutoff_per_series() -> None:
    both = pd.concat([forecasts("2020-12-01", "1", "2021-01-02"), forecasts("2021-06-01", "2", "2021-07-02")])
    older_only = forecasts("2020-12-01", "1", "2021-01-02").query("unique_id == 'a'").assign(unique_id="old")
    latest = latest_vintage(pd.concat([both, older_only]))
    per_series = latest.groupby("unique_id").agg(cutoff=("cutoff", "max"), n=("ds", "size"),
                                                 versions=("model_version", "nunique"))
    assert (per_series["n"] == 12).all() and (per_series["versions"] == 1).all()
    assert per_series.loc["a", "cutoff"] == pd.Timestamp("2021-06-01")
    assert per_series.loc["old", "cutoff"] == pd.Timestamp("2020-12-01")


def test_a_picture_from_a_real_lake(lake: Lake, tmp_path: Path) -> None:
    out = tmp_path / "pictures" / "forecast.png"
    result = plot_forecasts(lake, out, count=3, seed=0)
    data = out.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 20_000  # three panels with lines, bands and labels, not an empty canvas
    assert [c.unique_id for c in result.chosen][:2] == ["bad", "big"]
    assert result.chosen[0].reason == "worst live error (mean scaled error 3.00)"
    assert len(result.chosen) == 3
    assert set(result.cutoffs.values()) == {pd.Timestamp("2021-06-01")}
    assert set(result.actuals_since.values()) == {3}  # 2021-07 to 2021-09 arrived after the cutoff


def test_the_figure_draws_history_forecast_bands_and_actuals_since(lake: Lake) -> None:
    vintage = latest_vintage(lake.read(FORECASTS))
    figure = draw_forecasts(lake.read_series(), vintage, [Choice("a", "asked for")], recent=24)
    ax = figure.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert len(lines["history"].get_xdata()) == 24
    assert len(lines["forecast"].get_ydata()) == 13  # the last observation, then 12 steps
    assert len(lines["actual since the forecast"].get_xdata()) == 4  # the last observation, then 3 new ones
    assert {c.get_label() for c in ax.collections} == {"80 % interval", "95 % interval"}
    assert ax.get_title(loc="left").startswith("a  ·  asked for\nforecast from 2021-06-01 by lstm-forecaster v2")
    assert [t.get_text() for t in figure.legends[0].get_texts()] == [
        "history", "forecast", "80 % interval", "95 % interval", "actual since the forecast"]


def test_named_series_and_unknown_ones(lake: Lake, tmp_path: Path) -> None:
    result = plot_forecasts(lake, tmp_path / "one.png", ["c"])
    assert [c.unique_id for c in result.chosen] == ["c"]
    with pytest.raises(PipelineError, match="no forecast .* for series nope"):
        plot_forecasts(lake, tmp_path / "two.png", ["c", "nope"])
    with pytest.raises(NotEnoughData, match="no forecasts yet"):
        plot_forecasts(Lake(tmp_path / "empty"), tmp_path / "three.png")


def test_the_plot_command(lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "LOG_FILE", tmp_path / "cli.log")
    out = tmp_path / "cli.png"
    done = CliRunner().invoke(cli.app, ["plot", "--root", lake.root, "--out", str(out),
                                        "--series", "big", "--series", "a"])
    assert done.exit_code == 0, done.output
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert "  big: asked for; forecast from 2021-06-01, 3 actual(s) since" in done.output
    bare = Lake(tmp_path / "bare")  # series, but nothing forecast yet
    bare.upsert(SERIES, history(), keys=["unique_id", "ds"])
    missing = CliRunner().invoke(cli.app, ["plot", "--root", bare.root, "--out", str(out)])
    assert missing.exit_code == 1
    errors = [line for line in missing.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "holds no forecasts yet" in errors[0] and "Traceback" not in missing.output
