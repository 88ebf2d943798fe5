"""Registers and serves the `build-corpus`, `plan-mixture` and `train` deployments (`factory serve`, `make ui`)."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import serve
from prefect.deployments.runner import EntrypointType, RunnerDeployment
from prefect.schedules import Cron
from prefect.settings import PREFECT_API_URL, temporary_settings

from datafactory.factory.config import load_config
from datafactory.flows.build import build_corpus
from datafactory.flows.plan import plan_mixture
from datafactory.flows.server import LOCALHOST, local_server
from datafactory.flows.train import train_flow
from datafactory.pipelines.registry import stage_names

DEPLOYMENT_TAGS = ["datafactory"]


def config_schedule(config_path: Path) -> tuple[str, str] | None:
    """(cron, timezone) from the config's `schedule:` section, when it has one."""
    schedule = getattr(load_config(config_path), "schedule", None)
    return None if schedule is None else (schedule.cron, getattr(schedule, "timezone", None) or "UTC")


def build_deployments(config_path: Path, out_dir: Path, name: str | None = None, cron: str | None = None,
                      timezone: str = "UTC", policy_path: Path | None = None) -> list[RunnerDeployment]:
    """The three deployments, named NAME (default: the config's file stem), with absolute-path default parameters.

    Flows are loaded by module path, so a run works from any directory; only build-corpus is scheduled:
    cron from the argument, else from the config's `schedule:`, else none (runs start from the UI or API).
    """
    config_path, out_dir = Path(config_path).resolve(), Path(out_dir).resolve()
    name = name or config_path.stem
    schedule = (cron, timezone) if cron else config_schedule(config_path)
    # Serving re-registers the deployments from here: a schedule added in the UI lasts until the next restart.
    schedules = [Cron(schedule[0], timezone=schedule[1])] if schedule else []
    common = {"name": name, "tags": DEPLOYMENT_TAGS, "entrypoint_type": EntrypointType.MODULE_PATH}
    manifest, run_dir = out_dir / "manifests" / "stable.json", out_dir / "runs" / name
    return [
        build_corpus.to_deployment(
            parameters={"config_path": str(config_path), "out_dir": str(out_dir)}, schedules=schedules,
            description=f"Build {config_path.name} into {out_dir}: {', '.join(stage_names())}; finished stages are "
            "skipped", **common,
        ),
        plan_mixture.to_deployment(
            parameters={"build_dir": str(out_dir), "policy_path": str(policy_path.resolve()) if policy_path else None},
            description=f"Plan the stable and anneal mixtures of {out_dir}", **common,
        ),
        train_flow.to_deployment(
            parameters={"manifest": str(manifest), "out_dir": str(run_dir)},
            description=f"Train from {manifest} into {run_dir} (resumes from the last checkpoint)", **common,
        ),
    ]


def serve_deployments(config_path: Path, out_dir: Path, name: str | None = None, cron: str | None = None,
                      timezone: str = "UTC", policy_path: Path | None = None, limit: int | None = None) -> None:
    """Register the deployments with the API in PREFECT_API_URL and run their flow runs here until interrupted."""
    deployments = build_deployments(config_path, out_dir, name, cron, timezone, policy_path)
    serve(*deployments, limit=limit)


def run_serve(config: Path, out: Path, name: str | None = None, schedule: str | None = None,
              timezone: str = "UTC", policy: Path | None = None, limit: int | None = None, server: bool = False,
              port: int = 4200, prefect_home: Path | None = None) -> None:
    """`factory serve` / `make ui`: serve the deployments, optionally with a local server."""
    if not server:
        serve_deployments(config, out, name, schedule, timezone, policy, limit)
        return
    home = Path(prefect_home).resolve() if prefect_home else None
    with local_server(port=port, home=home) as url:
        # Flow runs are child processes: they take the API URL from the environment as well as from settings.
        os.environ["PREFECT_API_URL"] = url
        if home:
            os.environ["PREFECT_HOME"] = str(home)
        print(f"Prefect UI: http://{LOCALHOST}:{port}  (Ctrl-C stops the deployments and the server)", flush=True)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            serve_deployments(config, out, name, schedule, timezone, policy, limit)
