"""Provenance written into every run's manifest: package versions, the toolkit's commit, the host,
timestamps and peak memory."""

from __future__ import annotations

import platform
import subprocess
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bioqa.io.paths import SOURCE_ROOT

MANIFEST_PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "tokenizers",
    "safetensors",
    "bitsandbytes",
    "nltk",
    "rouge-score",
    "sacrebleu",
    "numpy",
)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KB on Linux


def peak_device_memory_mb(device: str) -> float | None:
    """The most memory torch held on the GPU in this process so far, in MB (CUDA's allocator peak; MPS keeps no
    peak: what Metal holds now); None on a CPU, where `peak_memory_mb` says it."""
    import torch

    if device == "cuda":
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    if device == "mps":
        return round(torch.mps.driver_allocated_memory() / 2**20, 1)
    return None


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def package_versions(names: Iterable[str] = MANIFEST_PACKAGES) -> dict[str, str | None]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit() -> str | None:
    """The toolkit's own commit (with `-dirty` when changed), or None outside a git checkout."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=SOURCE_ROOT, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=SOURCE_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def command_line(argv: Sequence[str] | None) -> list[str]:
    """The command as it was typed: the script's name and its arguments (default: this process's)."""
    return [Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]


def base_manifest(command: Sequence[str]) -> dict[str, Any]:
    return {
        "command": list(command),
        "started_at": utc_now(),
        "toolkit_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
    }
