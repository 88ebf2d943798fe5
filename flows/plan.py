"""Prefect flow `plan-mixture`: the build's shard index and a policy in, stable and anneal WSD manifests out."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from datafactory.factory.catalog import build_catalog
from datafactory.flows.artifacts import plan_markdown
from datafactory.flows.lock import run_lock
from datafactory.flows.retry import RETRIES, RETRY_DELAYS, RETRY_JITTER, retry_if_transient


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAYS, retry_jitter_factor=RETRY_JITTER,
      retry_condition_fn=retry_if_transient)
def plan_task(build_dir: str, policy_path: str | None) -> dict[str, str]:
    """Deterministic and seconds long, so it is recomputed on every run rather than cached: same inputs, same bytes."""
    # Imported here so a planner that fails to import breaks plan runs only, not the build deployment beside them.
    from datafactory.mixtures.planner import plan
    from datafactory.mixtures.policy import load_policy

    written = plan(Path(build_dir), load_policy(policy_path))
    build_catalog(build_dir)  # adds the `plan` view (again, if the planner already did)
    return {name: str(path) for name, path in written.items()}


@flow(name="plan-mixture")
def plan_mixture(build_dir: str, policy_path: str | None = None) -> dict[str, str]:
    """Write BUILD_DIR/manifests/{stable,anneal}.json from the shard index and a policy YAML (None: default)."""
    with run_lock(build_dir):  # never plan from a shard index a running build is rewriting
        written = plan_task(build_dir, policy_path)
    rows = pq.read_table(written["plan"]).to_pylist() if "plan" in written else []
    create_markdown_artifact(
        key="plan-summary", markdown=plan_markdown(Path(build_dir), rows, {k: Path(v) for k, v in written.items()}),
        description=f"mixture plan of {Path(build_dir).resolve()}",
    )
    return written
