"""The model: tensors and frames in, forecasts out, with no storage, no MLflow, no Prefect.

``grid`` (the frequency grid, calendar features), ``seasonal`` (seasonal naive, which the
network corrects, and the MASE scale that weights its loss), ``scaling`` and ``windows``
(pure functions with inverses), ``network`` (the ``nn.Module``), ``checkpoint`` (weights,
scaler and config, rebuilt without the code that trained them), ``train`` (one fit) and
``forecast`` (every series from its last observation).

May import: the root (config, errors). Never the lake, mlflow, prefect or deltalake: the
training core runs on a bare GPU box (tests/model/test_import_core.py).
"""
