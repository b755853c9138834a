"""Output folders: what a command may write to, what `--overwrite` may replace, and who holds it.

One rule for every command (training, prediction, merge, comparison):
* An output folder is never one of the command's inputs, nor inside one, nor around one (a folder
  that contains an input): refused before anything is written, whatever `--overwrite` says.
  Paths are compared after resolving symbolic links, so a link cannot hide the overlap.
* The output folder itself may not be a symbolic link (a dangling one included): replacing it
  would change where the link points, or write through it somewhere unexpected.
* A non-empty output folder is refused unless `--overwrite` is given, and even then it must be
  this command's own earlier output: every file in it, at any depth, is one the command recorded
  writing in its inventory (bioqa.io.inventory), unchanged. `--overwrite` replaces that output; it
  never deletes a file the command did not write.
* While a command writes, it holds an exclusive lock: a file `.<name>.lock` beside the output
  folder, created atomically, holding the owner's pid, host and command. A second command for the
  same folder is refused while the owner runs; a lock left by a process that is gone (killed, or
  its machine crashed) is reported with the command that removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bioqa.errors import InputError, option
from bioqa.io.files import signals_deferred
from bioqa.io.inventory import not_written
from bioqa.io.provenance import utc_now

# The command names an inventory (bioqa.io.inventory) records: --overwrite replaces only the same command's output.
TRAINING_OUTPUT = "load_models.py"
SEEDS_OUTPUT = "load_models.py (seeds study)"  # a study's folder: one training run per seed, and their summary
MERGE_OUTPUT = "merge_base_and_adapt_ft_models.py"
COMPARISON_OUTPUT = "bioqa.comparison"
BENCHMARK_OUTPUT = "bioqa-benchmark"


def real(path: str | Path) -> Path:
    """The absolute path with every symbolic link resolved (also for parts that do not exist yet)."""
    return Path(os.path.realpath(path))


def overlaps(a: Path, b: Path) -> bool:
    """a is b, or one lies inside the other."""
    return a == b or a in b.parents or b in a.parents


def check_not_an_input(out: Path, setting: str, inputs: dict[str, str | Path | None]) -> None:
    """InputError if `out` is, contains or lies inside any of `inputs` ({what it is: path}); remote
    names (Hub ids) that are not local paths are skipped."""
    target = real(out)
    for what, path in inputs.items():
        if not path or not Path(path).exists():
            continue
        source = real(path)
        if overlaps(target, source):
            relation = "is" if target == source else "contains" if target in source.parents else "lies inside"
            raise InputError(
                f"{option(setting)} {out} {relation} the {what} {path}; a command never writes over its own "
                "inputs, choose another folder"
            )


def run_folder(prediction_file: str | Path) -> Path | None:
    """The run a prediction file comes from: the folder holding it, or the one above (for
    predictions/eval-final.jsonl), whichever has the run's run_manifest.json or run_config.yaml; else None."""
    file = real(prediction_file)
    for folder in (file.parent, file.parent.parent):
        if (folder / "run_manifest.json").is_file() or (folder / "run_config.yaml").is_file():
            return folder
    return None


def check_writable(path: Path, setting: str) -> None:
    """InputError unless `path` can be this command's output folder: not a link or a file, creatable, writable."""
    if path.is_symlink():
        raise InputError(
            f"{option(setting)} {path} is a symbolic link (to {os.readlink(path)}); give the real folder it "
            "should write to, or remove the link"
        )
    if path.exists() and not path.is_dir():
        raise InputError(f"{option(setting)} {path} is a file; choose a folder")
    existing = next(p for p in [path, *path.parents] if p.exists())
    if not existing.is_dir():
        raise InputError(f"{option(setting)} {path} cannot be created: {existing} is a file; choose another folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise InputError(
            f"{option(setting)} {path} is not writable ({exc.strerror}); choose a folder you can write to"
        ) from None


def check_output_folder(path: Path, setting: str, command: str, overwrite: bool, how_to_allow: str) -> None:
    """InputError unless `path` is a folder this command may write (check_writable), and empty, or (with
    `overwrite`) holding only what an earlier run of `command` recorded writing there (bioqa.io.inventory)."""
    check_writable(path, setting)
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise InputError(f"{option(setting)} {path} is not empty; {how_to_allow}, or choose another folder")
        check_own_output(path, setting, command)


def check_own_output(path: Path, setting: str, command: str) -> None:
    """InputError naming the first file in `path` that `command` did not write there (or that changed since)."""
    why = not_written(path, command)
    if why:
        raise InputError(
            f"{option(setting)} {path} holds files {command} did not write: {why}; overwriting replaces only "
            "the files an earlier run of the same command recorded, so choose another folder or move that away"
        )


# ----------------------------------------------------------------------------- the lock


def lock_path(out: Path) -> Path:
    target = real(out)
    return target.parent / f".{target.name}.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _holder(lock: Path) -> dict:
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _refusal(lock: Path, setting: str, out: Path) -> InputError:
    holder = _holder(lock)
    pid, host = holder.get("pid"), holder.get("host", "?")
    if not isinstance(pid, int) or isinstance(pid, bool):
        return InputError(
            f"{option(setting)} {out} is locked: {lock} exists but names no owner (a run starting this moment, or a "
            f"damaged lock); if no run uses the folder, remove it (rm -r {lock}) and run again"
        )
    who = f"process {pid} on {host}" + (
        f" ({holder.get('command')}, since {holder.get('started_at')})" if holder.get("command") else ""
    )
    if host == socket.gethostname() and isinstance(pid, int) and not _alive(pid):
        return InputError(
            f"{option(setting)} {out} has a stale lock {lock} left by {who}, which is no longer running (it crashed "
            f"or was killed); if no other run uses the folder, remove it (rm {lock}) and run again"
        )
    return InputError(
        f"{option(setting)} {out} is in use by {who} (lock {lock}); wait for that run to end, or choose another "
        "folder; if it is gone, remove the lock file"
    )


def _take_lock(lock: Path, setting: str, out: Path) -> None:
    """Create `lock` atomically with its owner's record; a write that fails (a full disk) leaves no lock."""
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        raise _refusal(lock, setting, out) from None
    except OSError as exc:
        raise InputError(
            f"{option(setting)} {out} is not writable ({exc.strerror}); choose a folder you can write to"
        ) from None
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started_at": utc_now(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
    }
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(owner, handle)
    except OSError as exc:
        lock.unlink(missing_ok=True)
        raise InputError(
            f"{option(setting)} {out}: cannot write the lock {lock} ({exc.strerror}); free some space on that "
            "device or choose another folder"
        ) from None


@contextlib.contextmanager
def output_lock(out: Path, setting: str, enabled: bool = True) -> Iterator[None]:
    """Hold the exclusive lock of output folder `out` for the duration of the block."""
    if not enabled:
        yield
        return
    check_writable(out, setting)
    lock, taken = lock_path(out), False
    try:
        with signals_deferred():  # never a lock without its owner's record, nor one a signal here would leave
            _take_lock(lock, setting, out)
            taken = True
        yield
    finally:
        if taken:
            lock.unlink(missing_ok=True)
