"""Ingest flow: new files into the lake's ``series`` table, bad rows into ``quarantine``."""

from __future__ import annotations

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.common import publish_markdown, publish_table, resolve_config, retry_on_io
from lstm_pipeline.config import PipelineConfig
from lstm_pipeline.lake.ingest import IngestReport
from lstm_pipeline.stages import steps
from lstm_pipeline.stages.runs import ingest_result


@task(retries=2, retry_delay_seconds=[5, 30], retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def ingest_sources(cfg: PipelineConfig, sources: list[str]) -> IngestReport:
    # Safe to retry: ingest is idempotent (content hashes, keyed merges).
    return steps.run_ingest(cfg, sources)


@flow(name="ingest", timeout_seconds=3600)
def ingest_flow(
    sources: list[str], config: PipelineConfig | None = None, config_file: str | None = None
) -> dict[str, object]:
    cfg = resolve_config(config, config_file)
    report = ingest_sources(cfg, sources)
    publish_markdown("ingest-summary", f"```\n{report.summary()}\n```", "Ingest summary")
    if report.rows_quarantined:
        reasons = pd.Series(report.quarantine_reasons, name="rows").rename_axis("reason")
        publish_table("quarantine-summary", reasons.to_frame(), "Rows set aside in the quarantine table, by reason")
    return ingest_result(report)
