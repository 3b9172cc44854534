"""What a person sees while the pipeline works: bars on a terminal, a line per fit elsewhere."""

from __future__ import annotations

import logging

import pytest

from lstm_pipeline.model.train import EpochLog
from lstm_pipeline.stages import console


def epochs(member: int, fit: str, n: int, max_epochs: int = 10) -> list[EpochLog]:
    return [EpochLog(e, 1.0 / e, 2.0 / e, 1e-3, 0.1, member=member, fit=fit, max_epochs=max_epochs)
            for e in range(1, n + 1)]


def test_off_a_terminal_each_fit_is_one_line_and_no_epoch_is(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lstm_pipeline.stages.console")
    with console.training_progress(members=2, bars=False) as progress:
        for log in epochs(0, "evaluation", 4) + epochs(0, "refit", 2, max_epochs=2) + epochs(1, "evaluation", 3):
            progress(log)
        # A fit that ran all its epochs is reported at once, not when the next one starts.
        assert caplog.records[-1].getMessage() == "member 1/2 refit: 2 epochs, train loss 0.5000"
        progress(epochs(1, "refit", 1, max_epochs=1)[0])
    assert [r.getMessage() for r in caplog.records] == [
        "member 1/2 evaluation: 4 epochs, train loss 0.2500, validation loss 0.5000",
        "member 1/2 refit: 2 epochs, train loss 0.5000",
        "member 2/2 evaluation: 3 epochs, train loss 0.3333, validation loss 0.6667",
        "member 2/2 refit: 1 epoch, train loss 1.0000",
    ]


def test_on_a_terminal_each_fit_is_a_bar_that_ends_where_early_stopping_ended() -> None:
    with console.training_progress(members=1, bars=True) as progress:
        assert console.epoch_callbacks() == (progress,)  # what the train flow hands to run_training
        for log in epochs(0, "evaluation", 4, max_epochs=10) + epochs(0, "refit", 2, max_epochs=2):
            progress(log)
        tasks = progress.progress.tasks  # type: ignore[attr-defined]
        assert [(t.description, t.completed, t.total) for t in tasks] == [
            ("member 1/1 evaluation", 4, 4), ("member 1/1 refit", 2, 2)]
    assert console.epoch_callbacks() == ()


def test_the_file_bar_counts_each_file_the_ingest_reads_or_skips() -> None:
    sources = logging.getLogger("lstm_pipeline.lake.sources")
    with console.file_progress(3, bars=True):
        counter = next(h for h in sources.handlers if isinstance(h, console._FileCounter))
        seen: list[None] = []
        counter._advance = lambda: seen.append(None)
        sources.info("%s: read %d rows (%s)", "a.csv", 10, "abc")
        sources.info("%s: duplicate of an ingested source (%s), skipped", "b.csv", "abc")
        sources.warning("%s: no table files found", "c/")
    assert len(seen) == 2
    assert not any(isinstance(h, console._FileCounter) for h in sources.handlers)
