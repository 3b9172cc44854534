"""The training core runs on a bare GPU box: no prefect, no mlflow, no deltalake installed.

A fresh interpreter is started with an import hook that makes those three packages (and
everything under them) look uninstalled; it then imports the trainer and the forecaster,
fits a tiny model and forecasts with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a fresh interpreter that imports torch and trains

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("prefect", "mlflow", "deltalake")

_CHILD = textwrap.dedent(
    """
    import importlib.abc, json, sys

    BLOCKED = {blocked!r}

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    refused = []
    for name in BLOCKED:
        try:
            __import__(name)
        except ModuleNotFoundError:
            refused.append(name)

    import numpy as np
    import pandas as pd
    from lstm_pipeline.config import load_config
    from lstm_pipeline.model.forecast import predict
    from lstm_pipeline.model.train import fit

    t, rng = np.arange(60), np.random.default_rng(0)
    frame = pd.concat(
        [pd.DataFrame({{"unique_id": f"s{{i}}", "ds": pd.date_range("2015-01-01", periods=60, freq="MS"),
                       "y": 10.0 * i + 0.1 * t + np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.1, 60)}}) for i in range(3)],
        ignore_index=True,
    )
    cfg = load_config(overrides={{
        "window": {{"lookback": 12, "horizon": 6}},
        "model": {{"hidden_size": 8, "num_layers": 1, "dropout": 0.0}},
        "train": {{"max_epochs": 2, "batch_size": 32, "device": "cpu"}},
    }}, environ={{}})
    result = fit(frame, cfg, "MS")
    forecast = predict(result.checkpoint, frame, device="cpu").frame
    print(json.dumps({{
        "refused": refused,
        "loaded": sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED),
        "pipeline_modules": sorted(m for m in sys.modules if m.startswith("lstm_pipeline")),
        "epochs": len(result.history),
        "losses": [h.train_loss for h in result.history],
        "rows": len(forecast),
        "first_ds": str(forecast["ds"].min().date()),
    }}))
    """
)


def test_training_core_imports_and_trains_without_prefect_mlflow_or_deltalake() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(blocked=BLOCKED)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["refused"] == list(BLOCKED)  # the hook really hides them
    assert report["loaded"] == []
    assert {"lstm_pipeline.lake.tables", "lstm_pipeline.registry.tracking", "lstm_pipeline.stages.steps"}.isdisjoint(
        report["pipeline_modules"]
    )
    assert report["epochs"] == 2 and all(0 < loss < 10 for loss in report["losses"])
    assert report["rows"] == 3 * 6  # three series, horizon 6
    assert report["first_ds"] == "2020-01-01"  # one month after the last observation, 2019-12
