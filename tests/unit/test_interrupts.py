"""Signals become exceptions where the work runs, with the shell's exit codes."""

from __future__ import annotations

import os
import signal
import time

import pytest

from lstm_pipeline.errors import Interrupted
from lstm_pipeline.shell import interrupts


def wait_for_signal() -> None:
    for _ in range(100):  # the handler runs between bytecodes of this loop
        time.sleep(0.01)


def test_sigterm_raises_interrupted_and_sigint_keyboard_interrupt_even_when_ignored_before() -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a background job of a script starts
    try:
        with interrupts.raising_signals():
            with pytest.raises(Interrupted) as term:
                os.kill(os.getpid(), signal.SIGTERM)
                wait_for_signal()
            with pytest.raises(KeyboardInterrupt) as interrupt:
                os.kill(os.getpid(), signal.SIGINT)
                wait_for_signal()
        assert (interrupts.exit_code(term.value), interrupts.exit_code(interrupt.value)) == (143, 130)
        assert str(term.value) == "interrupted by SIGTERM"
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # the previous handlers are back
    finally:
        signal.signal(signal.SIGINT, before)


def test_interrupted_passes_through_except_exception() -> None:
    def retrying() -> None:
        try:
            raise Interrupted(signal.SIGTERM)
        except Exception:  # noqa: BLE001 - what a retry loop does
            pytest.fail("a signal's exception was caught as an error")

    with pytest.raises(Interrupted):
        retrying()
