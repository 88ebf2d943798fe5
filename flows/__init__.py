"""Prefect flows that sequence and record the stages, proxy studies and training runs.

Importing any flow turns Prefect's telemetry off unless the environment says otherwise: a build never calls out
(an ephemeral server started by a benchmark or a notebook would otherwise try to reach Prefect's servers)."""

import os

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
