"""What a pipeline run does, stage by stage, and what it reports.

``steps`` (ingest and forecast), ``training`` (policy, evaluate the procedure, refit,
register, gate), ``policy`` (whether to train and whether to promote, as pure functions),
``monitor`` (live accuracy of stored forecasts), ``runs`` (the runs table), ``status``
(the operator's view), ``forecast_plot`` (a picture of the latest forecasts) and
``console`` (progress bars on a terminal, plain lines elsewhere).

May import: the root, lake/, model/, evaluate/ and registry/. Not prefect: flows/ wraps
these functions in flows and tasks.
"""
