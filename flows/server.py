"""A local Prefect server (API + UI) bound to 127.0.0.1, started and stopped with its caller: `make ui` and tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

LOCALHOST = "127.0.0.1"


class ServerError(RuntimeError):
    """The local Prefect server did not come up."""


def free_port(host: str = LOCALHOST) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = LOCALHOST) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) == 0


def server_env(host: str, port: int, home: Path | None, ui: bool) -> dict[str, str]:
    """Host and port go in as settings: `prefect server start --port` alone leaves the UI pointing elsewhere."""
    env = dict(os.environ)
    env |= {
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true" if ui else "false",
        "PREFECT_API_URL": api_url(host, port),
    }
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    return env


def api_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/api"


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_healthy(url: str, process: subprocess.Popen, log_path: Path | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(url):
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path and log_path.exists() else ""
            raise ServerError(f"prefect server exited with code {process.returncode} before answering\n{tail}")
        if time.monotonic() > deadline:
            raise ServerError(f"prefect server did not answer {url}/health within {timeout:.0f} s")
        time.sleep(0.5)


def stop(process: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the server's process group (uvicorn and its services), then SIGKILL what is left."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def local_server(port: int = 4200, host: str = LOCALHOST, home: Path | None = None, ui: bool = True,
                 log_path: Path | None = None, timeout: float = 180.0) -> Iterator[str]:
    """Run `prefect server start` until the block exits; yields its API URL. A busy port is an error, not a reuse."""
    if port_in_use(port, host):
        raise ServerError(f"port {port} on {host} is in use: stop what holds it or pick another port")
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(log_path, "ab")) if log_path else None
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start"], env=server_env(host, port, home, ui),
            stdout=log, stderr=subprocess.STDOUT if log else None, start_new_session=True,
        )
        stack.callback(stop, process)  # runs before the log closes
        wait_healthy(api_url(host, port), process, log_path, timeout)
        yield api_url(host, port)
