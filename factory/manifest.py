"""Mixture manifest: JSON Schema validation, loading with path resolution, and hash checks against disk."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

import jsonschema

from datafactory.factory.atomic import write_text_atomic
from datafactory.factory.errors import UserError
from datafactory.factory.shards import sha256_file

SCHEMA_FILE = "manifest.schema.json"


class ManifestError(UserError, ValueError):
    """A manifest that does not validate or does not match the files it names."""


@cache
def manifest_schema() -> dict:
    text = resources.files("datafactory.factory").joinpath("schemas", SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def validate_manifest(manifest: dict, origin: str = "<manifest>") -> None:
    validator = jsonschema.Draft202012Validator(manifest_schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda err: list(err.absolute_path))
    if errors:
        lines = [f"{'/'.join(map(str, err.absolute_path)) or '(top)'}: {err.message}" for err in errors[:10]]
        raise ManifestError(f"manifest {origin} does not match the schema:\n  " + "\n  ".join(lines))
    weights = sum(source["weight"] for source in manifest["sources"])
    if abs(weights - 1.0) > 1e-6:
        raise ManifestError(f"manifest {origin}: source weights sum to {weights:.6f}, not 1")


def dump_manifest(manifest: dict, path: str | Path) -> Path:
    """Validate, then write with sorted keys so the same plan gives the same bytes."""
    validate_manifest(manifest, str(path))
    return write_text_atomic(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def manifest_root(manifest_path: str | Path, manifest: dict) -> Path:
    return (Path(manifest_path).parent / manifest["root"]).resolve()


def load_manifest(path: str | Path, allow_outside_root: bool = False) -> tuple[dict, Path]:
    """Load and validate a manifest; returns it with the root its relative paths resolve against."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {path}") from None
    except json.JSONDecodeError as err:
        raise ManifestError(f"manifest {path} is not valid JSON: {err}") from None
    validate_manifest(manifest, str(path))
    root = manifest_root(path, manifest)
    if not allow_outside_root:
        check_inside_root(path, manifest, root)
    return manifest, root


def check_inside_root(path: Path, manifest: dict, root: Path) -> None:
    """Every path a manifest names stays in its build directory: the root must be the directory the manifest sits
    in or the one above (DIR for DIR/manifests/stable.json; so `root: /` cannot widen it), shard and tokenizer paths
    resolve (symlinks too) under the root, and next_phase names a manifest under it."""
    here = path.resolve()
    if root not in (here.parent, here.parent.parent):
        raise ManifestError(f"manifest {path}: root {manifest['root']!r} resolves to {root}, which does not hold "
                            "the manifest: it is not this build's directory")
    for rel in manifest_paths(manifest):
        if not (root / rel).resolve().is_relative_to(root):
            raise ManifestError(f"manifest {path}: {rel} leaves the build directory {root}")
    following = manifest.get("next_phase")
    if following and not (here.parent / following).resolve().is_relative_to(root):
        raise ManifestError(f"manifest {path}: next_phase {following} leaves the build directory {root}")


def manifest_paths(manifest: dict) -> list[str]:
    paths = [manifest["tokenizer"]["path"]]
    paths += [shard["path"] for source in manifest["sources"] for shard in source["shards"]]
    return paths


def check_manifest_files(manifest: dict, root: Path) -> list[str]:
    """Every file the manifest names exists with the sha256 it records; returns the problems found."""
    problems = []
    expected = {manifest["tokenizer"]["path"]: manifest["tokenizer"]["sha256"]}
    for source in manifest["sources"]:
        expected.update({shard["path"]: shard["sha256"] for shard in source["shards"]})
    for rel, digest in sorted(expected.items()):
        target = root / rel
        if not target.exists():
            problems.append(f"{rel}: missing under {root}")
        elif sha256_file(target) != digest:
            problems.append(f"{rel}: sha256 differs from the manifest")
    return problems
