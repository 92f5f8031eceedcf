"""metrics.json: the schema (workflow/schemas/metrics.schema.json), atomic writes, checked reads.

Every result, checkpoint and table is written to a temporary file in the same folder and renamed
into place, so a crash mid-write never leaves a file that looks complete.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema

from dsr import REPO_ROOT

SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "metrics.schema.json"
SCHEMA_VERSION = 1


class ResultError(ValueError):
    """A metrics file is missing, corrupt or does not match the schema."""


def atomic_write(path: str | Path, write: Callable[[Any], None], mode: str = "w") -> None:
    """Call `write(fileobj)` on a temporary file beside `path`, fsync, then rename onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are shared like the data cache
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temps(path: str | Path) -> None:
    """Delete temporary files that `atomic_write(path)` left when its process was killed."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    # built once: jsonschema.validate re-checks the schema itself on every call (~50x slower)
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def validate(metrics: dict[str, Any], where: str = "metrics") -> None:
    try:
        _validator().validate(metrics)
    except jsonschema.ValidationError as e:
        path = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ResultError(f"{where}: field {path}: {e.message.splitlines()[0][:200]} "
                          "(does not match workflow/schemas/metrics.schema.json; rerun the job "
                          "to regenerate it)") from None


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> None:
    validate(metrics, str(path))
    atomic_write_text(path, json.dumps(metrics, indent=1, sort_keys=True) + "\n")


def read_metrics(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultError(f"{path}: no such metrics file; run the job that writes it") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultError(f"{path}: corrupt JSON ({e.__class__.__name__}: {e}); delete the file "
                          "and rerun its job") from None
    except OSError as e:  # a folder, unreadable file, ...: one line, not a traceback
        raise ResultError(f"{path}: cannot read ({e.strerror}); it must be a readable metrics.json "
                          "file") from None
    if not isinstance(metrics, dict):
        raise ResultError(f"{path}: expected a JSON object; delete the file and rerun its job")
    version = metrics.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultError(f"{path}: schema_version {version!r}, expected {SCHEMA_VERSION}; "
                          "rerun its job with this version of the suite")
    validate(metrics, str(path))
    return metrics
