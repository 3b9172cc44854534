"""lstm-pipeline: scheduled batch forecasting with a global PyTorch LSTM.

The library holds all logic; ``flows/`` wraps it in Prefect flows and ``cli`` starts them.
Importing the package has no side effects and does not import torch, mlflow or prefect.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
