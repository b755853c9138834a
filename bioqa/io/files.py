"""Files the toolkit reads and writes: atomic writes and staged folders (never a half-written
output), UTF-8 text and JSON Lines read with errors that name the file and line, and hashes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bioqa.errors import InputError, short, stop_signals


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:  # created inside: a signal right after mkstemp must still remove it
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private (0600); give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def write_yaml_atomic(path: Path, data: dict) -> None:
    import yaml

    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def write_jsonl_atomic(path: Path, rows: Iterable[dict]) -> None:
    write_text_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def path_kind(path: str | Path) -> str | None:
    """What is at `path`: "a folder", "a file", "a pipe", "a character device" (/dev/null), ...; None if nothing."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return "a broken symbolic link" if Path(path).is_symlink() else None
    kinds = [
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISREG, "a file"),
        (stat.S_ISFIFO, "a pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a file or folder")


def wrong_kind(path: str | Path, expected: str) -> str:
    """`path` is missing, or what it is instead of `expected`: the first half of an error line."""
    kind = path_kind(path)
    return f"{path} does not exist" if kind is None else f"{path} is {kind}, not {expected}"


def read_text(path: Path, what: str = "the file") -> str:
    """A UTF-8 text file, a byte-order mark dropped; InputError naming the file if it is not UTF-8 or unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text (byte {exc.start}); re-save {what} as UTF-8") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}; check its permissions") from None


def text_lines(text: str) -> list[str]:
    """Lines split on \\n (and \\r\\n) only: JSON strings and text may hold U+2028, U+2029, U+0085 or a
    form feed, which str.splitlines() would also split on. A final newline ends the last line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def parse_jsonl(text: str, path: Path, fix: str) -> list[dict]:
    """The JSON objects of a .jsonl text, blank lines skipped; InputError naming the line, ending with `fix`."""
    records = []
    for number, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path} line {number} is not valid JSON ({exc.msg}); {fix}") from None
        if not isinstance(record, dict):
            raise InputError(f"{path} line {number} is a JSON {type(record).__name__}, expected an object; {fix}")
        records.append(record)
    return records


def read_json(path: Path, what: str) -> Any:
    """A JSON file the toolkit relies on (a config, a report, a trainer state); a damaged one is a InputError
    naming it and `what` it is."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(
            f"{path} ({what}) is damaged: not valid JSON ({short(str(exc), 120)}); copy it again "
            "from where it came from"
        ) from None


def read_run_config(path: Path) -> dict[str, Any]:
    """A run_config.yaml that Recipe.settings() wrote (the options of a run); a damaged one is a InputError."""
    import yaml

    try:
        config = yaml.safe_load(read_text(path, "the run's configuration"))
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is damaged ({short(str(exc), 120)}); restore it from the run, or remove it") from None
    return config if isinstance(config, dict) else {}


@contextlib.contextmanager
def staged_folder(target: Path, before_replace: Callable[[], None] | None = None):
    """A fresh folder beside `target` to write into; on success it replaces `target` in one rename, after
    `before_replace` (the check, again, that the folder replaced holds only this command's own files).

    On any failure the folder is removed and `target` is left as it was: never a half-written output.
    """
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    try:  # created inside: a signal right after the mkdir must still remove it
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        yield staging
        if before_replace is not None and target.exists():
            before_replace()
        with signals_deferred():  # a signal between the two renames would leave neither the old output nor the new
            _swap(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap(staging: Path, target: Path) -> None:
    """`staging` becomes `target`; an earlier `target` is removed only once the new one is in place."""
    if not target.exists():
        os.replace(staging, target)
        return
    previous = target.parent / f".{target.name}.previous-{os.getpid()}"
    os.replace(target, previous)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(previous, target)
        raise
    shutil.rmtree(previous, ignore_errors=True)


@contextlib.contextmanager
def signals_deferred():
    """SIGINT, SIGTERM and SIGHUP wait until the block is done (their handlers run right after it)."""
    import signal

    deferred = set(stop_signals())
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, deferred)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def damaged_files(out: Path, recorded: Any, report: str) -> str | None:
    """The first file of `out` that differs from the sizes and hashes `inventory.file_records` gave (kept in
    `report`), or None."""
    if not isinstance(recorded, dict) or not recorded:
        return f"{report} records no file hashes (written by an older version)"
    for name, expected in recorded.items():
        file = out / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != expected.get("size") or file_sha256(file) != expected.get("sha256"):
            return f"{name} differs from {report} (size or SHA-256)"
    return None
