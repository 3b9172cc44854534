"""Prefect 3 flows: thin shells over ``lstm_pipeline.stages.steps`` (no logic of their own)."""

from flows.forecast import forecast_flow
from flows.ingest import ingest_flow
from flows.monitor import monitor_flow
from flows.pipeline import pipeline_flow
from flows.train import train_flow

__all__ = ["forecast_flow", "ingest_flow", "monitor_flow", "pipeline_flow", "train_flow"]
