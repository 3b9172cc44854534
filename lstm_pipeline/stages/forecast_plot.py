"""A picture of forecasts: each series' recent history, its latest forecast with the 80 %
and 95 % bands, and the actuals that have arrived since, one panel per series, in one PNG.

Which series to draw, when none are named, is :func:`choose_series`: the worst error
(live error from the ``accuracy`` table here; a backtest's per-series error in the
training run's ``forecast_vs_actual`` figure), the largest series, and a seeded random
one. The choice and the drawing take frames; only :func:`plot_forecasts` reads the lake.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: workers and CI have no display

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from lstm_pipeline.errors import NotEnoughData, PipelineError
from lstm_pipeline.lake.tables import ACCURACY, FORECASTS, SERIES, Lake

__all__ = [
    "Choice",
    "PlotResult",
    "choose_series",
    "draw_forecasts",
    "latest_vintage",
    "live_errors",
    "plot_forecasts",
]

LEVELS = (95, 80)  # widest band first, so the narrower one is drawn over it
_BAND_ALPHA = {95: 0.18, 80: 0.35}
_FORECAST_COLOR = "tab:blue"
_ACTUAL_COLOR = "black"
_SINCE_COLOR = "tab:red"


@dataclass(frozen=True)
class Choice:
    """One series to draw and why it was chosen (shown in its panel's title)."""

    unique_id: str
    reason: str


@dataclass(frozen=True)
class PlotResult:
    """What :func:`plot_forecasts` drew: the file, the series with their reasons, the cutoffs."""

    path: Path
    chosen: tuple[Choice, ...]
    cutoffs: dict[str, pd.Timestamp]
    actuals_since: dict[str, int]  # unique_id -> actuals after the forecast's cutoff

    def summary(self) -> str:
        lines = [f"plot: {len(self.chosen)} series -> {self.path}"]
        for c in self.chosen:
            since = self.actuals_since.get(c.unique_id, 0)
            lines.append(f"  {c.unique_id}: {c.reason}; forecast from {self.cutoffs[c.unique_id]:%Y-%m-%d}, "
                         f"{since} actual(s) since")
        return "\n".join(lines)


def live_errors(accuracy: pd.DataFrame) -> pd.Series:
    """Each series' mean scaled error over its realised forecasts (the ``accuracy`` table).

    Returns a Series indexed by unique_id (higher is worse); series whose errors have no
    scale (a constant history) are left out. Empty when nothing has been realised yet.
    """
    if accuracy.empty or "scaled_error" not in accuracy:
        return pd.Series(dtype="float64")
    errors = accuracy.assign(unique_id=accuracy["unique_id"].astype(str),
                             scaled_error=pd.to_numeric(accuracy["scaled_error"], errors="coerce"))
    return errors.groupby("unique_id")["scaled_error"].mean().dropna()


def choose_series(
    series: pd.DataFrame,
    errors: pd.Series | None = None,
    *,
    count: int = 3,
    seed: int = 0,
    among: Iterable[str] | None = None,
    error_name: str = "error",
) -> list[Choice]:
    """Up to ``count`` informative series of ``series`` (long format: unique_id, ds, y).

    In order: the one with the worst error (``errors``: per-series error indexed by
    unique_id, higher is worse; skipped when None or empty), the largest (highest mean
    absolute ``y``), then seeded random ones from the rest. Only ids in ``among`` are
    chosen, when given (e.g. the series that have a forecast). ``error_name`` names the
    error in the reason. The same inputs and seed give the same choice; ties go to the
    smaller id.
    """
    ids = series["unique_id"].astype(str)
    candidates = sorted(set(ids) & set(map(str, among)) if among is not None else set(ids))
    chosen: list[Choice] = []
    if count <= 0 or not candidates:
        return chosen
    if errors is not None and not errors.empty:
        finite = errors[np.isfinite(errors.astype("float64"))]
        finite = finite[finite.index.astype(str).isin(candidates)]
        if not finite.empty:
            ranked = sorted(finite.items(), key=lambda item: (-float(item[1]), str(item[0])))
            uid, value = ranked[0]
            chosen.append(Choice(str(uid), f"worst {error_name} (mean scaled error {float(value):.2f})"))
    size = series.assign(unique_id=ids, level=series["y"].astype("float64").abs())
    size = size[size["unique_id"].isin(candidates)].groupby("unique_id")["level"].mean()
    by_size = sorted((u for u in size.index if u not in {c.unique_id for c in chosen}),
                     key=lambda u: (-float(size[u]), u))
    if by_size and len(chosen) < count:
        chosen.append(Choice(by_size[0], f"largest (mean |y| {_number(float(size[by_size[0]]))})"))
    rest = [u for u in candidates if u not in {c.unique_id for c in chosen}]
    picks = np.random.default_rng(seed).permutation(len(rest))[: max(0, count - len(chosen))]
    chosen += [Choice(rest[i], f"random (seed {seed})") for i in sorted(picks)]
    return chosen[:count]


def latest_vintage(forecasts: pd.DataFrame) -> pd.DataFrame:
    """Each series' most recent forecast: its latest cutoff and, within it, the latest written.

    ``forecasts``: the ``forecasts`` table (unique_id, ds, cutoff, step, yhat, bounds,
    model_name, model_version, created_at). One forecast path per series, sorted by
    (unique_id, ds).
    """
    if forecasts.empty:
        return forecasts
    f = forecasts.assign(unique_id=forecasts["unique_id"].astype(str),
                         ds=pd.to_datetime(forecasts["ds"]), cutoff=pd.to_datetime(forecasts["cutoff"]))
    order = ["cutoff", "created_at"] if "created_at" in f else ["cutoff"]
    version = "model_version" if "model_version" in f else "cutoff"
    newest = f.sort_values(["unique_id", *order], kind="stable").groupby("unique_id").tail(1)
    keep = newest.set_index("unique_id")[["cutoff", version]]
    matched = f.join(keep, on="unique_id", rsuffix="_newest")
    same = matched["cutoff"] == matched["cutoff_newest"]
    if version != "cutoff":
        same &= matched[version].astype(str) == matched[f"{version}_newest"].astype(str)
    out = f[same.to_numpy()]
    return out.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)


def draw_forecasts(
    history: pd.DataFrame, forecasts: pd.DataFrame, chosen: Sequence[Choice | str], *, recent: int = 48
) -> Figure:
    """One panel per chosen series: history, forecast with bands, and actuals after the cutoff.

    ``history``: unique_id, ds, y (every observation, including any after the cutoff).
    ``forecasts``: one forecast per series (see :func:`latest_vintage`): unique_id, ds,
    cutoff, yhat and, where they exist, ``yhat_lo_80 … yhat_hi_95`` (missing columns or
    NaN rows are left out of the band). ``recent``: observations shown up to the cutoff.
    """
    choices = [c if isinstance(c, Choice) else Choice(str(c), "") for c in chosen]
    fig, axes = plt.subplots(len(choices), 1, figsize=(9, 2.9 * len(choices)), squeeze=False)
    h_all = history.assign(unique_id=history["unique_id"].astype(str), ds=pd.to_datetime(history["ds"]))
    f_all = forecasts.assign(unique_id=forecasts["unique_id"].astype(str), ds=pd.to_datetime(forecasts["ds"]),
                             cutoff=pd.to_datetime(forecasts["cutoff"]))
    for ax, choice in zip(axes[:, 0], choices):
        h = h_all[h_all["unique_id"] == choice.unique_id].sort_values("ds")
        f = f_all[f_all["unique_id"] == choice.unique_id].sort_values("ds")
        cutoff = f["cutoff"].max() if not f.empty else h["ds"].max()
        before, since = h[h["ds"] <= cutoff].tail(recent), h[h["ds"] > cutoff]
        ax.plot(before["ds"], before["y"], color=_ACTUAL_COLOR, linewidth=1.2, label="history")
        for level in LEVELS:
            lo, hi = f"yhat_lo_{level}", f"yhat_hi_{level}"
            if lo in f and hi in f and f[[lo, hi]].notna().all(axis=1).any():
                ax.fill_between(f["ds"], f[lo].astype("float64"), f[hi].astype("float64"), color=_FORECAST_COLOR,
                                alpha=_BAND_ALPHA[level], linewidth=0, label=f"{level} % interval")
        if not f.empty:
            # Joined to the last observation so that the forecast reads as its continuation.
            anchor = before.tail(1)
            ax.plot(pd.concat([anchor["ds"], f["ds"]]), pd.concat([anchor["y"], f["yhat"]]).astype("float64"),
                    color=_FORECAST_COLOR, linewidth=1.6, label="forecast")
            ax.axvline(cutoff, color="gray", linestyle=":", linewidth=1)
        if not since.empty:
            joined = pd.concat([before.tail(1), since])  # from the last observation, markers on the new ones
            ax.plot(joined["ds"], joined["y"], color=_SINCE_COLOR, linewidth=1, marker="o", markersize=3.5,
                    markevery=list(range(len(joined) - len(since), len(joined))), label="actual since the forecast")
        ax.set_title(_title(choice, f), fontsize=10, loc="left")
        ax.grid(True, alpha=0.3)
        locator = mdates.AutoDateLocator(minticks=4, maxticks=9)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        if max(abs(v) for v in ax.get_ylim()) >= 1000:  # 155,000 rather than 155000 or 1.55e5
            ax.yaxis.set_major_formatter(mticker.StrMethodFormatter("{x:,.0f}"))
    handles: dict[str, object] = {}
    for ax in axes[:, 0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    order = ["history", "forecast", "80 % interval", "95 % interval", "actual since the forecast"]
    labels = [label for label in order if label in handles]
    fig.legend([handles[label] for label in labels], labels, loc="upper center", ncol=len(labels),
               fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return fig


def plot_forecasts(
    lake: Lake,
    out: str | Path,
    series: Sequence[str] | None = None,
    *,
    count: int = 3,
    seed: int = 0,
    recent: int = 48,
) -> PlotResult:
    """Draw each series' latest forecast from ``lake`` into the PNG ``out``.

    ``series``: the ids to draw; default :func:`choose_series` over the series that have
    a forecast, with the live errors of the ``accuracy`` table. NotEnoughData when the
    lake holds no forecasts; PipelineError naming any id that has none.
    """
    vintages = latest_vintage(lake.read(FORECASTS))
    if vintages.empty:
        raise NotEnoughData(f"the lake at {lake.root} holds no forecasts yet: run `lstm-pipeline forecast` first")
    history = lake.read_series(version=lake.version(SERIES))
    have = set(vintages["unique_id"])
    if series:
        unknown = [s for s in series if s not in have]
        if unknown:
            raise PipelineError(f"no forecast in the lake at {lake.root} for series {', '.join(unknown)}")
        chosen = [Choice(s, "asked for") for s in dict.fromkeys(series)]
    else:
        chosen = choose_series(history, live_errors(lake.read(ACCURACY)), count=count, seed=seed, among=have,
                               error_name="live error")
        if not chosen:
            raise NotEnoughData(f"the lake at {lake.root} holds forecasts but none of their series")
    ids = [c.unique_id for c in chosen]
    drawn = vintages[vintages["unique_id"].isin(ids)]
    cutoffs = {str(k): pd.Timestamp(v) for k, v in drawn.groupby("unique_id")["cutoff"].max().items()}
    h = history.assign(unique_id=history["unique_id"].astype(str))
    since = {uid: int(((h["unique_id"] == uid) & (h["ds"] > cutoffs[uid])).sum()) for uid in ids}
    figure = draw_forecasts(history, drawn, chosen, recent=recent)
    path = Path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", dpi=110)
    except OSError as exc:
        raise PipelineError(f"cannot write the picture to {path}: {exc}") from exc
    finally:
        plt.close(figure)
    return PlotResult(path, tuple(chosen), cutoffs, since)


def _title(choice: Choice, forecast: pd.DataFrame) -> str:
    title = choice.unique_id + (f"  ·  {choice.reason}" if choice.reason else "")
    if forecast.empty:
        return title + "  ·  no forecast"
    row = forecast.iloc[0]
    name = str(row["model_name"]) if "model_name" in forecast and pd.notna(row["model_name"]) else ""
    version = str(row["model_version"]) if "model_version" in forecast and pd.notna(row["model_version"]) else ""
    by = " ".join(part for part in (name, f"v{version}" if version.isdigit() else version) if part)
    cutoff = f"forecast from {pd.Timestamp(row['cutoff']):%Y-%m-%d}"
    return f"{title}\n{cutoff}" + (f" by {by}" if by else "")


def _number(value: float) -> str:
    """A level for a title: thousands separated, no exponent for everyday sizes."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
