"""The background Prefect server: `factory build` starts it once, later builds reuse it, their runs are recorded
there, and `factory server stop` ends its whole process group."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from datafactory.app.demo import write_demo_corpus
from datafactory.flows.server import background_server, pid_alive, read_background, stop_background_server


def factory(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATAFACTORY_PREFECT_SERVER", "PREFECT_API_URL")} | {"PREFECT_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "datafactory.app.cli", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def flow_run_states(api_url: str) -> list[str]:
    request = urllib.request.Request(f"{api_url}/flow_runs/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        runs = json.load(response)
    return [run["state_type"] for run in runs]


@pytest.fixture
def home(tmp_path: Path):
    home = tmp_path / "prefect-home"
    yield home
    stop_background_server(home)  # never leave a server behind, even when an assertion failed


def test_builds_share_one_background_server_until_stopped(home: Path, tmp_path: Path) -> None:
    corpus = write_demo_corpus(tmp_path / "input", n_docs=20, seed=5)
    first = factory(["build", str(corpus.config), "--out", str(tmp_path / "a")], home)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "background server started" in first.stdout
    server = read_background(home)
    assert server is not None and pid_alive(server.pid)

    second = factory(["build", str(corpus.config), "--out", str(tmp_path / "b")], home)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"background server running, pid {server.pid}" in second.stdout
    assert flow_run_states(server.url).count("COMPLETED") == 2

    stopped = factory(["server", "stop"], home)
    assert f"pid {server.pid}" in stopped.stdout
    assert not pid_alive(server.pid)
    assert read_background(home) is None


def test_a_dead_server_is_replaced_not_reused(home: Path) -> None:
    first = background_server(home)
    first.wait()
    stop_background_server(home)
    (home / "datafactory-server.json").write_text(json.dumps({"url": first.url, "pid": first.pid}))  # stale state
    second = background_server(home)
    assert second.started and second.pid != first.pid
    second.wait()
