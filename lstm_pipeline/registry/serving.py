"""The MLflow pyfunc model, logged from code ("models from code", no pickle).

MLflow runs this file when it loads a model version: it defines the model and hands it
to ``set_model``. The model only loads the version's bundle (checkpoints and interval
widths, see :mod:`lstm_pipeline.registry.bundle`) and calls the library; it holds no logic. The
library never imports this module.

    model = mlflow.pyfunc.load_model("models:/lstm-forecaster@champion")
    forecast = model.predict(history)   # unique_id, ds, y -> unique_id, ds, cutoff, step, yhat, intervals
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd

from lstm_pipeline.registry.bundle import ModelBundle


class ForecastModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    """History frame (``unique_id, ds, y``) in, the forecast frame out."""

    bundle: ModelBundle

    def load_context(self, context: Any) -> None:
        self.bundle = ModelBundle.load(context.artifacts)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self.bundle.forecast(model_input).frame


mlflow.models.set_model(ForecastModel())
