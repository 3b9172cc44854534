"""lstm-pipeline: scheduled batch forecasting with a global PyTorch LSTM.

The library holds all logic, one package per layer, each importing only the layers below
it (tests/unit/test_layers.py): ``lake`` and ``model`` on the root (``config``,
``errors``), then ``evaluate``, ``registry``, ``stages`` and the ``shell``. ``flows/`` wraps
the stages in Prefect flows. Importing the package has no side effects and does not import
torch, mlflow or prefect.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
