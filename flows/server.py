"""Local Prefect servers (API + UI) bound to 127.0.0.1: one started and stopped with its caller (`make ui`, tests), and
the user's background server that `factory build` starts once and reuses, so a build does not pay for a server start.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


def wait_healthy(url: str, alive: Callable[[], bool], log_path: Path | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(url):
        if not alive():
            tail = log_path.read_text(errors="replace")[-3000:] if log_path and log_path.exists() else ""
            raise ServerError(f"prefect server exited before answering {url}\n{tail}")
        if time.monotonic() > deadline:
            raise ServerError(f"prefect server did not answer {url}/health within {timeout:.0f} s")
        time.sleep(0.5)


def stop(process: subprocess.Popen, grace: float = 20.0) -> None:
    """Stop a server this process started (and reap it)."""
    stop_group(process.pid, lambda: process.poll() is None, grace)


def stop_group(pid: int, alive: Callable[[], bool], grace: float = 20.0) -> None:
    """SIGTERM a server's process group (uvicorn and its services), then SIGKILL what is left after ``grace``."""
    for sent in (signal.SIGTERM, signal.SIGKILL):
        if not alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sent)
        deadline = time.monotonic() + grace
        while alive() and time.monotonic() < deadline:
            time.sleep(0.2)


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
        wait_healthy(api_url(host, port), lambda: process.poll() is None, log_path, timeout)
        yield api_url(host, port)


BACKGROUND_STATE = "datafactory-server.json"
BACKGROUND_LOG = "datafactory-server.log"


def prefect_home() -> Path:
    """Prefect's home (database, settings) as the server will see it; read without importing Prefect (slow)."""
    return Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()


def pid_alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # reap it if this process started it and it has exited
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class BackgroundServer:
    """The user's background Prefect server: its API URL, process id, log file, and whether this call started it."""

    url: str
    pid: int
    log_path: Path
    started: bool

    @property
    def ui_url(self) -> str:
        return self.url.removesuffix("/api")

    def wait(self, timeout: float = 180.0) -> str:
        """Block until the server answers (a server this call started takes a few seconds); return its API URL."""
        wait_healthy(self.url, lambda: pid_alive(self.pid), self.log_path, timeout)
        return self.url


@contextlib.contextmanager
def home_lock(home: Path) -> Iterator[None]:
    """Two builds starting at once share one server instead of racing to start two."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "datafactory-server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_background(home: Path) -> BackgroundServer | None:
    try:
        state = json.loads((home / BACKGROUND_STATE).read_text())
        server = BackgroundServer(state["url"], int(state["pid"]), home / BACKGROUND_LOG, started=False)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return server if pid_alive(server.pid) and is_prefect_server(server) else None


def is_prefect_server(server: BackgroundServer) -> bool:
    """Guards against a recycled process id: the recorded process must answer or be a starting Prefect server."""
    if healthy(server.url):
        return True
    try:
        return b"prefect" in Path(f"/proc/{server.pid}/cmdline").read_bytes()
    except OSError:
        return False


def background_server(home: Path | None = None) -> BackgroundServer:
    """Reuse the background server recorded in Prefect's home, or start one that outlives this process (its
    database is the same one Prefect's temporary per-process servers use, so run history carries over)."""
    home = home or prefect_home()
    with home_lock(home):
        running = read_background(home)
        if running is not None:
            return running
        port = free_port()
        env = server_env(LOCALHOST, port, home, ui=True)
        with open(home / BACKGROUND_LOG, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start"], env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        server = BackgroundServer(api_url(LOCALHOST, port), process.pid, home / BACKGROUND_LOG, started=True)
        (home / BACKGROUND_STATE).write_text(json.dumps({"url": server.url, "pid": server.pid}))
        return server


def stop_background_server(home: Path | None = None, grace: float = 20.0) -> BackgroundServer | None:
    """Stop the background server (its whole process group); returns what was stopped, None if none ran."""
    home = home or prefect_home()
    with home_lock(home):
        running = read_background(home)
        (home / BACKGROUND_STATE).unlink(missing_ok=True)
        if running is None:
            return None
        stop_group(running.pid, lambda: pid_alive(running.pid), grace)
        return running
