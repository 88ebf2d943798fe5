"""Against a real local Prefect server: deployments register, a build runs, a killed worker's build resumes.

The server runs on a free port with its own PREFECT_HOME (database and cached task results) and is stopped after.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
from prefect.client.schemas.objects import FlowRun
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Crashed

from datafactory.app.demo import write_demo_corpus
from datafactory.factory.markers import MARKER_NAME
from datafactory.flows.lock import LOCK_NAME, dir_lock
from datafactory.flows.server import free_port, local_server
from datafactory.pipelines.registry import stage_names

NAME = "test"  # deployment name: build-corpus/test, plan-mixture/test, train/test
WAIT = 420  # seconds; generous, since a loaded CI machine may take minutes to import Beam in a fresh process


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prefect-home")


@pytest.fixture(scope="module")
def api_url(home: Path) -> Iterator[str]:
    with local_server(port=free_port(), home=home, ui=False, log_path=home / "server.log") as url:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
            APILogHandler().flush()  # send this process's run logs while the server still answers


@pytest.fixture(scope="module")
def client(api_url: str) -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as prefect_client:
        yield prefect_client


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    corpus = write_demo_corpus(tmp_path_factory.mktemp("corpus") / "input", n_docs=300, seed=3)
    config = yaml.safe_load(corpus.config.read_text()) | {
        "num_partitions": 2,
        "runner": {"direct_running_mode": "in_memory"},
        "tokenize": {"seq_len": 64, "rows_per_shard": 256, "tokenizer": {"vocab_size": 4000}},
    }
    path = corpus.config.with_name(f"{NAME}.yaml")
    path.write_text(yaml.safe_dump(config))
    return path


def wait_for(condition: Callable[[], object], what: str, timeout: float = WAIT, every: float = 0.5) -> object:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return value


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants, from /proc (flow runs are children of the worker, in their own session)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if entry.name.isdigit():
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += parents.get(current, [])
    return tree


def signal_tree(pid: int, sig: signal.Signals) -> None:
    for member in process_tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, sig)


class Worker:
    """`factory serve` in a subprocess: registers the three deployments and runs their flow runs."""

    def __init__(self, api_url: str, home: Path, config_path: Path, out: Path, log_path: Path) -> None:
        env = os.environ | {"PREFECT_API_URL": api_url, "PREFECT_HOME": str(home),
                            "PREFECT_RUNNER_POLL_FREQUENCY": "1", "PREFECT_LOGGING_LEVEL": "INFO"}
        self.log_path = log_path
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "datafactory.app.cli", "serve", str(config_path), "--out", str(out), "--name", NAME],
            env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """What a crashed machine does: the worker and every flow-run process under it die at once."""
        signal_tree(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            tree = process_tree(self.process.pid)
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                pass
            for pid in tree:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.log.close()

    def tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("build") / "demo"


@pytest.fixture
def workers(api_url: str, home: Path) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(config_path: Path, out: Path) -> Worker:
        worker = Worker(api_url, home, config_path, out, home / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def trigger(client: SyncPrefectClient, deployment: str, **parameters: object) -> FlowRun:
    deployment_id = client.read_deployment_by_name(deployment).id
    return client.create_flow_run_from_deployment(deployment_id, parameters=parameters)


def final(client: SyncPrefectClient, run: FlowRun, worker: Worker) -> FlowRun:
    def finished() -> FlowRun | None:
        current = client.read_flow_run(run.id)
        return current if current.state and current.state.is_final() else None

    try:
        return wait_for(finished, f"flow run {run.name}", every=1)
    except AssertionError as err:
        raise AssertionError(f"{err}\nworker log:\n{worker.tail()}") from None


def task_states(client: SyncPrefectClient, run: FlowRun) -> dict[str, str]:
    """Stage name -> state name of the run's task runs (task runs are named `<stage>-<suffix>`)."""
    task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    return {task_run.name.rsplit("-", 1)[0]: task_run.state_name for task_run in task_runs}


def markers(out: Path) -> dict[str, tuple[bytes, int]]:
    """Each finished stage's completion marker: its bytes and mtime, which a redone stage would change."""
    found = {}
    for stage in stage_names():
        path = out / "stages" / stage / MARKER_NAME
        if path.exists():
            found[stage] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def test_deployments_register_and_a_killed_build_resumes_without_redoing_finished_stages(
    client, workers, config_path, build_dir, tmp_path
):
    out, locked = build_dir, tmp_path / "locked"
    worker = workers(config_path, out)
    for flow_name in ("build-corpus", "plan-mixture", "train"):
        wait_for(lambda name=flow_name: _deployment(client, f"{name}/{NAME}"), f"deployment {flow_name}/{NAME}")
    assert client.read_deployment_by_name(f"build-corpus/{NAME}").parameters == {
        "config_path": str(config_path.resolve()), "out_dir": str(out.resolve())}
    assert client.read_deployment_by_name(f"plan-mixture/{NAME}").parameters["build_dir"] == str(out.resolve())
    assert client.read_deployment_by_name(f"train/{NAME}").parameters["manifest"].endswith("manifests/stable.json")

    # Kill the worker once ingest is done and langid has begun (its log opens once ingest's marker is written).
    killed = trigger(client, f"build-corpus/{NAME}", config_path=str(config_path), out_dir=str(out))
    wait_for(lambda: (out / "logs" / "langid.log").exists(), "the build to reach langid", every=0.05)
    worker.kill()
    client.set_flow_run_state(killed.id, Crashed(message="worker killed by the test"), force=True)
    done_before = markers(out)
    assert "ingest" in done_before and "tokenize" not in done_before, sorted(done_before)
    stale = (out / LOCK_NAME).read_text()
    assert str(killed.id) in stale  # the dead run's lock record is still there...

    worker = workers(config_path, out)
    with dir_lock(locked, flow_run="held-by-the-test"):  # ...and a held lock refuses a second build
        refused = trigger(client, f"build-corpus/{NAME}", config_path=str(config_path), out_dir=str(locked))
        resumed = trigger(client, f"build-corpus/{NAME}", config_path=str(config_path), out_dir=str(out))
        refused = final(client, refused, worker)
    assert refused.state.is_failed() and "held-by-the-test" in refused.state.message, refused.state.message

    resumed = final(client, resumed, worker)
    assert resumed.state.is_completed(), f"{resumed.state}\n{worker.tail()}"
    states = task_states(client, resumed)
    assert set(states) == set(stage_names())
    assert set(states.values()) == {"Completed"}, states  # done stages complete at once, skipped by their markers
    after = markers(out)
    assert all(after[stage] == done_before[stage] for stage in done_before)  # finished stages were not redone
    assert set(after) == set(stage_names())

    stages = len(stage_names())  # progress reaches the run's Logs tab, not only the terminal

    def run_logs() -> list:  # the worker ships its log records in batches, so the last ones may still be on the way
        return client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[resumed.id])))

    wait_for(lambda: any(log.message.startswith(f"({stages}/{stages}) ✓ tokenize:") for log in run_logs()),
             "the tokenize stage's progress line in the run's logs")
    logs = run_logs()
    assert any("stale lock" in log.message and str(killed.id) in log.message for log in logs)
    assert any(log.message.startswith("(1/") and "already done, skipped" in log.message for log in logs)
    artifacts = {a.key: a for a in client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(
        any_=[resumed.id])))}
    assert {f"{stage}-summary" for stage in stage_names()} | {"build-summary"} <= set(artifacts)
    assert "| documents in |" in artifacts["dedup-summary"].data and "| dropped: " in artifacts["dedup-summary"].data
    assert "| tokens |" in artifacts["tokenize-summary"].data
    assert "| worker log | [" in artifacts["dedup-summary"].data and "logs/dedup.log" in artifacts["dedup-summary"].data
    assert "skipped (already done)" in artifacts["ingest-summary"].data
    assert "catalog.duckdb" in artifacts["build-summary"].data and "final status: kept" in artifacts[
        "build-summary"].data
    assert (out / LOCK_NAME).read_text() == ""


def test_plan_mixture_publishes_the_plan_and_links_the_manifests(client, config_path, build_dir):
    """In-process flow runs against the same server: the build (every stage already done above), then the plan."""
    from datafactory.flows.build import build_corpus
    from datafactory.flows.plan import plan_mixture

    assert all(result.skipped for result in build_corpus(str(config_path), str(build_dir)))
    state = plan_mixture(str(build_dir), return_state=True)
    written = state.result()
    assert Path(written["stable"]).exists() and Path(written["anneal"]).exists()
    artifacts = {a.key: a.data for a in client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(
        any_=[state.state_details.flow_run_id])))}
    assert "stable.json" in artifacts["plan-summary"] and "| planned_tokens |" in artifacts["plan-summary"]


def _deployment(client: SyncPrefectClient, name: str) -> bool:
    try:
        client.read_deployment_by_name(name)
    except Exception:  # ObjectNotFound until the worker has registered it
        return False
    return True


def test_a_stage_task_retries_transient_errors_only(client):
    """The retry policy the stage tasks use, on a task that fails the way a flaky store or a bad config does."""
    from prefect import flow, task

    from datafactory.flows.retry import retry_if_transient

    calls: list[str] = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_if_transient)
    def flaky(error: str) -> str:
        calls.append(error)
        if len(calls) == 1 or error == "ValueError":
            raise ConnectionResetError("peer reset") if error == "ConnectionResetError" else ValueError("bad config")
        return "done"

    @flow
    def run(error: str) -> str:
        return flaky(error)

    assert run("ConnectionResetError") == "done" and len(calls) == 2
    calls.clear()
    with pytest.raises(ValueError, match="bad config"):
        run("ValueError")
    assert len(calls) == 1
