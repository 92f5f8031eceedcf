"""Provenance of a run: when it started, the code and packages it ran with, on which machine."""

from __future__ import annotations

import datetime as dt
import platform
import socket
import subprocess
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import torch

from dsr import REPO_ROOT
from dsr.harness.resolve import plugin_provenance

if TYPE_CHECKING:
    from dsr.config import RunConfig

PACKAGES = ("torch", "torchvision", "spikingjelly", "numpy", "snakemake")


@dataclass(frozen=True)
class Start:
    """When a run started and which code it started with: read then, not when it ends, so a
    commit made while a long run trains is not recorded as the code that ran."""

    time: str
    git_commit: str | None
    git_dirty: bool | None  # tracked files differ from git_commit


def started() -> Start:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return Start(now(), git("rev-parse", "HEAD"), None if status is None else bool(status))


def provenance(device: torch.device, start: Start, world_size: int) -> dict[str, Any]:
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    packages["python"] = platform.python_version()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {"git_commit": start.git_commit, "git_dirty": start.git_dirty,
            "packages": packages, "device": f"{device.type}: {name or platform.machine()}",
            "start_time": start.time, "end_time": now(), "hostname": socket.gethostname(),
            "world_size": world_size}


def run_provenance(cfg: RunConfig, device: torch.device, start: Start,
                   world_size: int) -> dict[str, Any]:
    """provenance() plus every out-of-tree class the run imported (file and sha256)."""
    return {**provenance(device, start, world_size), "plugins": plugin_provenance(cfg)}


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
