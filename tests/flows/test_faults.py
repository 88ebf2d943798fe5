"""Faults: a build SIGKILLed inside each stage in turn resumes to the reference bytes without redoing finished
stages or trusting partial files, and so does a `factory build` killed with all its processes; the trainer
refuses tampered shards and manifests that leave their build."""

from __future__ import annotations

import json
import multiprocessing
import os
import runpy
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datafactory.factory.manifest import ManifestError

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "killable_build.py"
# Imported once by the fork server, not once per child.
PRELOAD = ["datafactory.pipelines.registry", "datafactory.factory.config"]
CHILD_TIMEOUT_S = 300


def run_child(ctx: multiprocessing.context.BaseContext, config: Path, out: Path, kill_stage: str | None) -> int:
    args = [str(config), str(out), kill_stage]
    child = ctx.Process(target=runpy.run_path, args=(str(SCRIPT),),
                        kwargs={"init_globals": {"ARGS": args}, "run_name": "__main__"})
    child.start()
    child.join(CHILD_TIMEOUT_S)
    if child.is_alive():
        child.kill()
        pytest.fail(f"build killed in {kill_stage} did not finish in {CHILD_TIMEOUT_S} s")
    return child.exitcode


def finished_files(out: Path, stages: list[str]) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every output of the finished stages: a stage that is redone replaces them."""
    files = [p for stage in stages for p in [*(out / "stages" / stage).rglob("*"),
                                            *(out / "ledger").glob(f"{stage}-part-*")] if p.is_file()]
    return {str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}


def temporary_files(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*") if p.is_file() and ".tmp" in p.name)


def test_killed_in_every_stage_resumes_to_the_reference_bytes(small_corpus, reference_build, digest, plan_build,
                                                              tmp_path):
    from datafactory.pipelines.registry import stage_names

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    config, out = small_corpus / "test.yaml", tmp_path / "build"
    partial = {}
    for stage in stage_names():
        done = [name for name in stage_names() if (out / "stages" / name / "_SUCCESS.json").exists()]
        before = finished_files(out, done)
        assert run_child(ctx, config, out, stage) == -signal.SIGKILL, f"the build was not killed in {stage}"
        assert not (out / "stages" / stage / "_SUCCESS.json").exists(), f"{stage} marked done after a kill"
        assert finished_files(out, done) == before, f"a stage finished before the kill in {stage} was redone"
        partial[stage] = temporary_files(out)
    # Each kill left a file under its temporary name: the states a resumed build must not take as output.
    assert all(partial.values()), partial
    assert run_child(ctx, config, out, None) == 0
    plan_build(out)
    assert digest(out) == digest(reference_build)
    assert temporary_files(out) == []


@pytest.fixture
def build_copy(reference_build, tmp_path) -> Path:
    copy = tmp_path / "build"
    shutil.copytree(reference_build, copy, ignore=shutil.ignore_patterns("catalog.duckdb", "logs"))
    return copy


def rewrite(manifest: Path, name: str, **changes) -> Path:
    data = json.loads(manifest.read_text()) | changes
    target = manifest.with_name(name)
    target.write_text(json.dumps(data))
    return target


def test_trainer_refuses_a_shard_whose_sha256_differs(build_copy):
    from datafactory.trainer.data import open_phase

    stable = build_copy / "manifests" / "stable.json"
    shard = build_copy / json.loads(stable.read_text())["sources"][0]["shards"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="sha256 differs from the manifest"):
        open_phase(stable)


def test_trainer_refuses_manifests_that_leave_the_build(build_copy):
    from datafactory.trainer.data import open_phase

    stable = build_copy / "manifests" / "stable.json"
    manifest = json.loads(stable.read_text())
    shard = manifest["sources"][0]["shards"][0]
    outside = build_copy.parent / "elsewhere.arrow"
    shutil.copyfile(build_copy / shard["path"], outside)
    escaped = rewrite(stable, "escaped.json", sources=[
        {**manifest["sources"][0], "shards": [{**shard, "path": "../elsewhere.arrow"}]}, *manifest["sources"][1:]])
    with pytest.raises(ManifestError, match="leaves the build directory"):
        open_phase(escaped)
    wide_root = rewrite(stable, "wide-root.json", root="/")
    with pytest.raises(ManifestError, match="does not hold the manifest"):
        open_phase(wide_root)
    onward = rewrite(stable, "onward.json", next_phase="../../elsewhere.json")
    with pytest.raises(ManifestError, match="next_phase"):
        open_phase(onward)
    assert open_phase(escaped, allow_outside_root=True).name == "stable"  # explicitly allowed


def test_factory_build_killed_with_its_process_group_resumes_to_the_reference_bytes(
        small_corpus, reference_build, digest, plan_build, tmp_path):
    """The CLI as a user runs it: `factory build` (Prefect flow, Beam runner, lock) SIGKILLed with every process
    it started, as when its machine dies, once two stages are done; `factory build` again finishes the rest."""
    factory = Path(sys.executable).with_name("factory")
    out, log = tmp_path / "build", tmp_path / "build.log"
    command = [str(factory), "build", str(small_corpus / "test.yaml"), "--out", str(out)]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(out / "stages" / "langid" / "_SUCCESS.json", process, log)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)
    assert process.returncode == -signal.SIGKILL
    assert not (out / "stages" / "tokenize" / "_SUCCESS.json").exists(), "the build finished before the kill"
    done = [stage for stage in ("ingest", "langid") if (out / "stages" / stage / "_SUCCESS.json").exists()]
    before = finished_files(out, done)
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert finished_files(out, done) == before, "a stage finished before the kill was redone"
    plan_build(out)
    assert digest(out) == digest(reference_build)
    assert temporary_files(out) == []


def wait_for(path: Path, process: subprocess.Popen, log: Path, timeout_s: float = CHILD_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"factory build exited ({process.returncode}) before {path.name}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {path} after {timeout_s} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
