"""The shell around the library: the command line and the local services.

``cli`` (``lstm-pipeline``: flow runs of flows/ when a Prefect API is set, ``local_run``
otherwise: the same stages in its own process; ``status`` and ``plot`` read the lake),
``interrupts`` (SIGINT, SIGTERM and SIGHUP raised where the work runs) and ``services``
(PostgreSQL, an S3-compatible store, an MLflow server and a Prefect server on 127.0.0.1,
started and stopped by PID).

May import: every package of the library, and flows/.
"""
