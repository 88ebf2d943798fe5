"""A pipeline whose worker process dies, or whose build disk fills up, fails within seconds instead of waiting for
ever; a full disk under a whole build is one error line naming the stage and the path, and the lock is released;
SIGTERM ends `factory build` and every process it started within seconds."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import apache_beam as beam
import pytest

from datafactory.factory.config import parse_config
from datafactory.pipelines.common import run_beam
from datafactory.pipelines.watchdog import GRACE_SECONDS, PipelineStuck


def die_in_the_worker(element: int) -> int:
    if element == 3:
        os._exit(1)  # what the OOM killer does to a worker: no exception, no report
    return element


@pytest.mark.slow
def test_a_worker_that_dies_fails_the_pipeline_instead_of_hanging():
    config = parse_config({"inputs": [{"path": "unused", "source": "web"}],
                           "runner": {"direct_running_mode": "multi_processing", "direct_num_workers": 2}})
    start = time.perf_counter()
    with pytest.raises(PipelineStuck, match="worker process died"):
        run_beam(config, lambda pipeline: pipeline | beam.Create(range(8)) | beam.Map(die_in_the_worker))
    assert time.perf_counter() - start < GRACE_SECONDS + 30


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a 1 MiB tmpfs here (needs root): {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_build_on_a_full_disk_stops_with_one_line_naming_stage_path_and_cause(tmp_path, small_disk):
    from datafactory.app.demo import write_demo_corpus

    corpus = write_demo_corpus(tmp_path / "input", n_docs=600, seed=1)
    config = corpus.root / "demo.yaml"
    config.write_text(config.read_text() + "runner: {direct_running_mode: multi_processing}\n")
    start = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "factory"), "build", str(config), "--out",
                           str(small_disk / "build")], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "DATAFACTORY_PREFECT_SERVER": "ephemeral", "COLUMNS": "400"})
    assert done.returncode != 0 and time.perf_counter() - start < 300
    said = " ".join((done.stdout + done.stderr).split())
    assert f"error: stage quality: no space left on device: {small_disk / 'build'}" in said or (
        "error: stage " in said and "no space left on device" in said), said[-2000:]
    assert "Traceback" not in done.stdout
    lock = small_disk / "build" / ".lock"
    assert not lock.exists() or not lock.read_text()  # released: empty


def beam_workers_among(processes) -> bool:
    import psutil

    for process in processes:
        with contextlib.suppress(psutil.Error):  # a process may end while it is looked at
            if "sdk_worker_main" in " ".join(process.cmdline()):
                return True
    return False


@pytest.mark.slow
def test_sigterm_ends_a_build_and_everything_it_started_within_seconds(tmp_path):
    import psutil

    from datafactory.app.demo import write_demo_corpus

    corpus = write_demo_corpus(tmp_path / "input", n_docs=600, seed=1)
    config = corpus.root / "demo.yaml"
    config.write_text(config.read_text() + "runner: {direct_running_mode: multi_processing}\n")
    log = tmp_path / "build.log"
    with log.open("w") as out:
        build = subprocess.Popen([str(Path(sys.executable).parent / "factory"), "build", str(config), "--out",
                                  str(tmp_path / "build")], stdout=out, stderr=subprocess.STDOUT,
                                 env={**os.environ, "DATAFACTORY_PREFECT_SERVER": "ephemeral", "COLUMNS": "400"})
        deadline = time.monotonic() + 300
        started = []  # Prefect's server, Beam workers: wait until the first stage's workers run (for seconds)
        while not beam_workers_among(started) and time.monotonic() < deadline and build.poll() is None:
            time.sleep(0.5)
            started = psutil.Process(build.pid).children(recursive=True)
        assert started, log.read_text()[-2000:]
        build.terminate()
        stop = time.monotonic()
        assert build.wait(timeout=60) == 143
    assert time.monotonic() - stop < 30
    psutil.wait_procs(started, timeout=10)
    assert not [process for process in started if process.is_running()
                and process.status() != psutil.STATUS_ZOMBIE], log.read_text()[-2000:]
    assert not (tmp_path / "build" / ".lock").read_text()


@pytest.mark.slow
def test_a_build_into_a_read_only_directory_is_one_error_line(tmp_path, small_disk):
    done = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot remount the tmpfs read-only: {done.stderr.decode().strip()}")
    (tmp_path / "docs.jsonl").write_text('{"id": "a", "text": "some text to build"}\n')
    (tmp_path / "build.yaml").write_text("inputs: [{path: docs.jsonl, source: web}]\n")
    done = subprocess.run([str(Path(sys.executable).parent / "factory"), "build", str(tmp_path / "build.yaml"),
                           "--out", str(small_disk / "build")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DATAFACTORY_PREFECT_SERVER": "ephemeral", "COLUMNS": "400"})
    said = done.stdout + done.stderr
    assert done.returncode != 0 and "error: read-only file system" in said and "Traceback" not in said, said[-3000:]
