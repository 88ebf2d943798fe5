"""Directory lock and retry policy: refused while held, free for other directories, stale after a kill."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from datafactory.flows.lock import LOCK_NAME, DirLocked, check_unlocked, dir_lock
from datafactory.flows.retry import is_transient


def test_a_second_holder_of_the_same_directory_is_refused(tmp_path):
    with dir_lock(tmp_path, flow_run="first-run"):
        with pytest.raises(DirLocked, match=rf"pid {os.getpid()} .*flow run first-run"):
            with dir_lock(tmp_path):
                pass
    with dir_lock(tmp_path) as stale:  # released on exit, and not mistaken for a stale lock
        assert stale is None


def test_a_held_lock_is_seen_without_taking_it(tmp_path):
    check_unlocked(tmp_path / "never-built")  # no directory, no lock file: free
    with dir_lock(tmp_path, flow_run="first-run"):
        with pytest.raises(DirLocked, match=r"flow run first-run"):
            check_unlocked(tmp_path)
    check_unlocked(tmp_path)
    with dir_lock(tmp_path) as stale:  # the check took nothing and left no record
        assert stale is None


def test_different_directories_are_locked_side_by_side(tmp_path):
    with dir_lock(tmp_path / "a"), dir_lock(tmp_path / "b"):
        assert (tmp_path / "a" / LOCK_NAME).read_text() and (tmp_path / "b" / LOCK_NAME).read_text()


def test_the_lock_is_released_when_the_build_fails(tmp_path):
    with pytest.raises(ValueError), dir_lock(tmp_path):
        raise ValueError("stage failed")
    with dir_lock(tmp_path) as stale:
        assert stale is None


def test_a_lock_left_by_a_killed_process_is_detected_as_stale_and_taken_over(tmp_path):
    holder = textwrap.dedent(f"""
        import os, signal
        from datafactory.flows.lock import dir_lock
        with dir_lock({str(tmp_path)!r}, flow_run="killed-run"):
            print("locked", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    process = subprocess.run([sys.executable, "-c", holder], capture_output=True, text=True, timeout=120)
    assert process.returncode == -signal.SIGKILL and "locked" in process.stdout, process.stderr
    with dir_lock(tmp_path) as stale:
        assert stale is not None and stale["flow_run"] == "killed-run" and stale["pid"] != os.getpid()
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released cleanly: nothing stale for the next build


@pytest.mark.parametrize(("error", "transient"), [
    (ConnectionResetError("peer reset"), True),
    (TimeoutError("read timed out"), True),
    (OSError(5, "Input/output error"), True),
    (RuntimeError("Pipeline failed: ConnectionResetError: [Errno 104] in worker"), True),
    (FileNotFoundError("no such input"), False),
    (ValueError("invalid config"), False),
    (RuntimeError("Vocabulary size is smaller than required_chars"), False),
])
def test_only_transient_errors_are_retried(error, transient):
    assert is_transient(error) is transient


def test_a_transient_cause_makes_the_wrapping_error_transient():
    try:
        try:
            raise ConnectionError("object store unreachable")
        except ConnectionError as cause:
            raise RuntimeError("stage failed") from cause
    except RuntimeError as err:
        assert is_transient(err)
