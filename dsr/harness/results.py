"""metrics.json: the schema (dsr/schemas/metrics.schema.json), atomic writes, checked reads,
and the lock that keeps one process per run folder.

Every result, checkpoint and table is written to a temporary file in the same folder and renamed
into place, so a crash mid-write never leaves a file that looks complete. A result holds only
finite numbers: NaN or infinity is refused when written and when read (a run that diverged says
so in its `diverged` field instead).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import json
import math
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_PATH = Path(__file__).parents[1] / "schemas" / "metrics.schema.json"
SCHEMA_VERSION = 1


class ResultError(ValueError):
    """A metrics file is missing, corrupt or does not match the schema."""


class Busy(ResultError):
    """Another process holds the run folder's lock."""


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
                          "(does not match dsr/schemas/metrics.schema.json; rerun the job "
                          "to regenerate it)") from None


def non_finite(value: Any, where: str = "") -> str | None:
    """The path (a/b/3) of the first NaN or infinite number in a JSON-like value, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "(top level)"
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        found = non_finite(item, f"{where}/{key}" if where else str(key))
        if found is not None:
            return found
    return None


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> None:
    bad = non_finite(metrics)
    if bad is not None:
        raise ResultError(f"{path}: field {bad} is not a finite number; a run whose loss or "
                          "weights became non-finite is recorded as diverged, not with NaN")
    validate(metrics, str(path))
    atomic_write_text(path, json.dumps(metrics, indent=1, sort_keys=True, allow_nan=False)
                      + "\n")


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> float:
    raise _NonFinite(name)


def read_metrics(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        metrics = json.loads(path.read_text(), parse_constant=_refuse_constant)
    except FileNotFoundError:
        raise ResultError(f"{path}: no such metrics file; run the job that writes it") from None
    except _NonFinite as e:
        raise ResultError(f"{path}: holds the non-finite number {e}; delete the file and rerun "
                          "its job") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise ResultError(f"{path}: corrupt JSON ({e.__class__.__name__}: {e}); delete the file "
                          "and rerun its job") from None
    except OSError as e:  # a folder, unreadable file, ...: one line, not a traceback
        raise ResultError(f"{path}: cannot read ({e.strerror}); it must be a readable metrics.json "
                          "file") from None
    if not isinstance(metrics, dict):
        raise ResultError(f"{path}: expected a JSON object; delete the file and rerun its job")
    bad = non_finite(metrics)  # e.g. 1e999, which JSON reads as infinity
    if bad is not None:
        raise ResultError(f"{path}: field {bad} is not a finite number; delete the file and "
                          "rerun its job")
    version = metrics.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultError(f"{path}: schema_version {version!r}, expected {SCHEMA_VERSION}; "
                          "rerun its job with this version of the suite")
    validate(metrics, str(path))
    return metrics


def quarantine(path: str | Path) -> Path:
    """Move an unusable result aside (never delete it): metrics.json ->
    metrics.corrupt-<UTC time>.json beside it, which no rule or table reads."""
    path = Path(path)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = path.with_name(f"{path.stem}.corrupt-{stamp}{path.suffix}")
    os.replace(path, target)
    return target


@contextlib.contextmanager
def run_lock(out: str | Path) -> Iterator[None]:
    """Hold the lock of the run that writes `out` while the block runs: a hidden file beside it
    (.<name>.lock), removed again at the end. A second process, from any working directory or
    node that shares the folder, gets a one-line Busy error naming the holder. The kernel
    releases the lock when the holder dies, so a killed run never leaves a stale lock."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = out.parent / f".{out.name}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise Busy(f"{out.parent}: another process ({holder}) is running this run; wait "
                       "for it to finish (or stop it), then rerun") from None
        try:  # the holder before us may have removed the file after we opened it: retry
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {now}".encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)  # while still held: a waiter then retries on a new file
        os.close(fd)
