"""One Prefect test harness (a real local Prefect server) for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    # Entering takes 15-30 s on 2 cores; every flow test then shares the server.
    with prefect_test_harness(server_startup_timeout=180):
        yield
