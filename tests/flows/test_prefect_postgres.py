"""A Prefect server backed by PostgreSQL (what teams run: SQLite serialises concurrent flow runs): the test starts its
own PostgreSQL on 127.0.0.1 from the Debian packages, points `prefect server start` at it with
PREFECT_API_DATABASE_CONNECTION_URL (as `factory serve --server` passes the environment on), and runs two
plan-mixture flows at once; both complete and their runs are rows in PostgreSQL."""

import contextvars
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogHandler
from prefect.settings import PREFECT_API_URL, temporary_settings
from support.builds import copy_build

from datafactory.flows.plan import plan_mixture
from datafactory.flows.server import free_port, local_server

pytestmark = pytest.mark.slow


def as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the `postgres` user the Debian package creates."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    tools = {name: shutil.which(name) for name in ("initdb", "pg_ctl", "createdb")}
    if not all(tools.values()):
        pytest.skip("PostgreSQL is not installed here (Debian: apt-get install postgresql); "
                    f"missing {[name for name, path in tools.items() if not path]}")
    if os.geteuid() == 0 and (shutil.which("runuser") is None or subprocess.run(
            ["id", "postgres"], capture_output=True).returncode):
        pytest.skip("running as root without a `postgres` user to start PostgreSQL as")
    # pytest's temporary folders are private to their owner; the server's user must reach its cluster
    data = Path(tempfile.mkdtemp(prefix="datafactory-postgres-"))
    data.chmod(0o777)
    cluster = data / "cluster"
    port = free_port()
    subprocess.run(as_postgres([tools["initdb"], "-D", str(cluster), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
                   check=True, capture_output=True)
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {cluster}"
    subprocess.run(as_postgres([tools["pg_ctl"], "-D", str(cluster), "-o", options, "-l", str(data / "pg.log"),
                                "-w", "start"]), check=True, capture_output=True)
    try:
        subprocess.run(as_postgres([tools["createdb"], "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                                    "prefect"]), check=True, capture_output=True)
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run(as_postgres([tools["pg_ctl"], "-D", str(cluster), "-m", "fast", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_two_flows_at_once_on_a_postgres_backed_server(postgres, reference_build, tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", postgres)
    builds = [copy_build(reference_build, tmp_path / f"build-{i}") for i in range(2)]
    with local_server(port=free_port(), home=tmp_path / "home", ui=False, log_path=tmp_path / "server.log") as url:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            contexts = [contextvars.copy_context() for _ in builds]  # threads start without the settings context
            with ThreadPoolExecutor(max_workers=2) as pool:
                states = list(pool.map(lambda context, build: context.run(plan_mixture, str(build), return_state=True),
                                       contexts, builds))
            assert all(state.is_completed() for state in states), states
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs()
            assert len(runs) == 2 and all(run.state.is_completed() for run in runs)
            # Send this process's queued run logs and events while the server answers: left queued, Prefect's
            # exit hook would wait on a server that is gone and hold the test session open.
            APILogHandler().flush()
            EventsWorker.drain_all(timeout=60, at_exit=False)
    port = postgres.rsplit(":", 1)[1].split("/")[0]
    counted = subprocess.run(as_postgres(["psql", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-d", "prefect",
                                          "-tAc", "SELECT count(*) FROM flow_run"]), check=True, capture_output=True,
                             text=True)
    assert int(counted.stdout.strip()) >= 2  # the runs live in PostgreSQL, not in a SQLite file under PREFECT_HOME
    assert not list((tmp_path / "home").glob("*.db"))
    assert all((build / "manifests" / "stable.json").exists() for build in builds)
