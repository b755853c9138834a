"""What a command wrote into its output folder: `written_files.json`, the inventory that proves an earlier output
is the command's own and says exactly what `--overwrite` may delete.

Every file a command writes into its output folder is recorded there by its path inside the folder, size,
SHA-256 and modification time (the time lets a later check skip hashing a file whose size and time are as
recorded, the way git and rsync do). `--overwrite` deletes exactly the recorded files that are unchanged;
anything else found in the folder, at any depth (a user's notes, a changed file, an empty folder, a link),
makes it refuse, naming the first such path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bioqa.io.files import file_sha256, write_json_atomic

INVENTORY = "written_files.json"


def file_record(file: Path) -> dict[str, Any]:
    stat = file.stat()
    return {"size": stat.st_size, "sha256": file_sha256(file), "mtime_ns": stat.st_mtime_ns}


def walk(folder: Path) -> tuple[list[str], list[str]]:
    """Every file (links included, never followed) and every folder below `folder`, as paths relative to it."""
    files, folders = [], []
    for root, dirs, names in os.walk(folder):
        base = Path(root).relative_to(folder)
        for name in list(dirs):
            if (Path(root) / name).is_symlink():  # a link to a folder is a file here: never walked into
                dirs.remove(name)
                names.append(name)
            else:
                folders.append((base / name).as_posix())
        files += [(base / name).as_posix() for name in names]
    return sorted(files), sorted(folders)


def file_records(folder: Path) -> dict[str, dict[str, Any]]:
    """The record of every file below `folder` (a staging folder this command filled), the inventory left out."""
    return {path: file_record(folder / path) for path in walk(folder)[0] if path != INVENTORY}


def read_inventory(folder: Path) -> dict[str, Any] | None:
    """The inventory of `folder`, or None when it has none (or one that cannot be read)."""
    try:
        content = json.loads((folder / INVENTORY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(content, dict) or not isinstance(content.get("files"), dict):
        return None
    return content


def write_inventory(folder: Path, command: str, records: dict[str, dict[str, Any]]) -> None:
    write_json_atomic(folder / INVENTORY, {"command": command, "files": dict(sorted(records.items()))})


def record(folder: Path, command: str, *paths: str) -> None:
    """Add `paths` (files, or folders: every file below them) to the inventory of `folder`, dropping the
    records of files that are gone (checkpoints the Trainer rotated out)."""
    records = {k: v for k, v in ((read_inventory(folder) or {}).get("files") or {}).items() if (folder / k).exists()}
    for path in paths:
        target = folder / path
        if target.is_dir() and not target.is_symlink():
            records.update({f"{path}/{inner}": file_record(target / inner) for inner in walk(target)[0]})
        elif target.exists():
            records[path] = file_record(target)
    write_inventory(folder, command, records)


def _unchanged(file: Path, recorded: Any) -> bool:
    if not isinstance(recorded, dict) or file.is_symlink() or not file.is_file():
        return False
    stat = file.stat()
    if stat.st_size != recorded.get("size"):
        return False
    return stat.st_mtime_ns == recorded.get("mtime_ns") or file_sha256(file) == recorded.get("sha256")


def not_written(folder: Path, command: str) -> str | None:
    """Why `folder` is not purely `command`'s earlier output (naming the first path it did not write, or a
    file changed since), or None when every file and folder in it is one the command recorded, unchanged."""
    inventory = read_inventory(folder)
    if inventory is None:
        return f"it has no {INVENTORY} (the record of what a command wrote there)"
    if inventory.get("command") != command:
        return f"{INVENTORY} says {inventory.get('command')!r} wrote it"
    recorded, (files, folders) = inventory["files"], walk(folder)
    for path in files:
        if path != INVENTORY and path not in recorded:
            return f"{path} is not one of the files it wrote"
        if path != INVENTORY and not _unchanged(folder / path, recorded[path]):
            return f"{path} was changed after it was written"
    holders = {parent.as_posix() for path in recorded for parent in Path(path).parents}
    stray = next((path for path in folders if path not in holders), None)
    return f"{stray}/ is not a folder it wrote" if stray else None


def remove_recorded(folder: Path) -> list[str]:
    """Delete the files the inventory of `folder` records, the folders they leave empty, and the inventory
    (after `not_written` found nothing else); return the paths removed."""
    recorded = sorted((read_inventory(folder) or {}).get("files") or {})
    for path in recorded:
        (folder / path).unlink(missing_ok=True)
    parents = {parent for path in recorded for parent in Path(path).parents if parent != Path(".")}
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        try:
            (folder / parent).rmdir()
        except OSError:  # not empty: it holds something else (never the case after not_written)
            pass
    (folder / INVENTORY).unlink(missing_ok=True)
    return recorded
