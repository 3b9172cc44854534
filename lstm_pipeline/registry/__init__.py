"""Model versions: what one holds, what is known about it, and MLflow.

``bundle`` (the served and evaluation members and the interval widths of a version),
``facts`` (what the training policy reads off a version), ``versions`` (a version's
facts, a loaded model, the local copy of the champion), ``tracking`` (MLflow runs,
registration and aliases), ``serving`` (the MLflow model file, logged from code) and
``plots`` (the reviewer's figures).

The only package that imports mlflow, and only in ``tracking`` and ``serving``: a bundle,
its facts and the local copy load without it. May import: the root, model/ and evaluate/.
"""
