"""Shared fixtures: the real data in ../shared/data (skip without it, unless CI requires it)."""

import os
from pathlib import Path

import pytest

# Prefect reads these at import: no telemetry, and no INFO chatter from the temporary server in test output.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_LOGGING_SERVER_LEVEL", "WARNING")
# The temporary server Prefect starts per test session may take longer than its 20 s default on a loaded machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        if os.environ.get("DATAFACTORY_REQUIRE_SHARED") == "1":
            pytest.fail(f"DATAFACTORY_REQUIRE_SHARED=1 but {SHARED_DATA} does not exist")
        pytest.skip(f"real test data not found at {SHARED_DATA} (set up ../shared/data to run this test)")
    return SHARED_DATA
