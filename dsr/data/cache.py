"""The decoded-tensor cache: each source is decoded once into one torch file per content key.

The file name is <name>-<first 16 hex digits of the key's sha1>.pt; the key (JSON, with
CACHE_FORMAT) is stored in the file too and checked on load, so a stale or foreign file is an
error rather than silently wrong data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from dsr.data.core import DataError, one_line
from dsr.harness.results import atomic_write

CACHE_FORMAT = 1  # bump when the cache content changes meaning


def cached(
    name: str, key: dict, cache_dir: Path, build: Callable[[], dict]
) -> dict[str, Tensor | list[str]]:
    """Load the cache file for `key`, or build it and write it with
    dsr.harness.results.atomic_write.

    key: everything the content depends on (source folder, file listing, settings); build: a
    function returning a dict of tensors (and lists of str). A plug-in dataset may use it too.
    """
    text = json.dumps({"format": CACHE_FORMAT, **key}, sort_keys=True)
    path = cache_dir / f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:16]}.pt"
    if path.exists():
        try:
            content = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(content, dict) or content.get("key") != text:
                raise ValueError("unexpected content")
        except Exception as err:
            raise DataError(
                f"{name}: cache file {path} is corrupt or truncated ({one_line(err)}); "
                f"delete it and rerun to rebuild it from the source"
            ) from None
        return content
    content = {**build(), "key": text}
    atomic_write(path, lambda f: torch.save(content, f), mode="wb")
    return content
