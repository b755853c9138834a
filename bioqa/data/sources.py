"""Where question-answer records come from: local files or a Hub dataset.

Local files: JSONL, JSON (a list of records, {"data": [...]}, or an object keyed by id such as the
raw PubMedQA `ori_pqal.json`), CSV and Parquet. Records are rows as the source holds them, before
`bioqa.data.splits` maps their fields; anything unreadable becomes an InputError naming the file (and line)
and the fix.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

from bioqa.errors import InputError, option, short
from bioqa.io.files import parse_jsonl

FORMATS = ("auto", "jsonl", "json", "csv", "parquet")
SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
Records = list[dict[str, Any]]  # rows as a file or dataset holds them, before the field mapping


def read_records(path: Path, fmt: str = "auto") -> Records:
    """Records of a local data file; InputError naming the file (and line) for anything unreadable."""
    return read_source(path, fmt)[0]


def read_source(path: Path, fmt: str = "auto") -> tuple[Records, dict[str, Any]]:
    """Records of a local data file and where they came from: its path and the SHA-256 of the very bytes parsed
    (read once: a pipe such as <(cat data.jsonl) cannot be read twice, a file may change in between)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"data file {path} does not exist; check the path")
    if path.is_dir():
        raise InputError(f"data file {path} is a directory; give the file inside it")
    fmt = SUFFIX_FORMATS.get(path.suffix.lower()) if fmt == "auto" else fmt
    if fmt is None:
        raise InputError(
            f"cannot tell the format of {path} from its suffix; use .jsonl, .json, .csv or "
            f".parquet, or pass {option('data_format')}"
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}; check its permissions") from None
    return _parse(data, path, fmt), {"path": str(path), "sha256": hashlib.sha256(data).hexdigest()}


def _parse(data: bytes, path: Path, fmt: str) -> Records:
    if fmt == "parquet":
        import pyarrow.parquet

        try:
            return pyarrow.parquet.read_table(io.BytesIO(data)).to_pylist()
        except Exception as exc:  # pyarrow raises its own error types for corrupt files
            raise InputError(f"cannot read {path} as Parquet: {exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text (byte {exc.start}); re-save it as UTF-8") from None
    return {"jsonl": _jsonl, "json": _json, "csv": _csv}[fmt](text, path)


def _jsonl(text: str, path: Path) -> Records:
    return parse_jsonl(text, path, "fix or remove that line")


def _json(text: str, path: Path) -> Records:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); fix the file") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values()):
        return [{"id": key, **value} for key, value in data.items()]  # keyed by id, e.g. raw PubMedQA
    if isinstance(data, list) and all(isinstance(v, dict) for v in data):
        return data
    raise InputError(f'{path} holds no records; expected a list of objects, {{"data": [...]}} or an object keyed by id')


def _csv(text: str, path: Path) -> Records:
    try:  # csv itself joins the lines of a quoted field that spans several; only \n ends a line
        return list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise InputError(f"{path} is not valid CSV ({exc}); fix the file") from None


def load_hub_dataset(name: str, config: str | None) -> dict[str, Records]:
    """Every split of a Hugging Face Hub dataset, as lists of records."""
    import datasets

    try:
        dataset = datasets.load_dataset(name, config)
    except Exception as exc:  # offline, unknown name or config: datasets raises many types
        raise InputError(
            f"cannot load dataset {name!r}{f' ({config})' if config else ''}: "
            f"{short(str(exc), 300)}; offline, use {option('train_file')} with a local file"
        ) from None
    return {split: dataset[split].to_list() for split in dataset}


SPLIT_FILE_NAMES = {"train": ("train",), "validation": ("validation", "valid", "dev"), "test": ("test",)}


def local_dataset_files(folder: Path) -> dict[str, Path]:
    """The split files of a local dataset folder given as --dataset_name: `<split>.<ext>` or `<split>-*.<ext>`
    (as the Hub lays them out), at its top or in its data/ folder; one file per split."""
    found: dict[str, Path] = {}
    for split, names in SPLIT_FILE_NAMES.items():
        matches = sorted(
            path
            for place in (folder, folder / "data")
            for name in names
            for pattern in (f"{name}.*", f"{name}-*.*")
            for path in place.glob(pattern)
            if path.suffix.lower() in SUFFIX_FORMATS and path.is_file()
        )
        if len(matches) > 1:
            raise InputError(
                f"{option('dataset_name')} {folder}: the {split} split has {len(matches)} files "
                f"({', '.join(p.name for p in matches[:4])}); keep one, or give it with {option(split + '_file')}"
            )
        if matches:
            found[split] = matches[0]
    if "train" not in found and "test" not in found:
        raise InputError(
            f"{option('dataset_name')} {folder} is a local folder without train.* or test.* files (.jsonl, .json, "
            f".csv or .parquet); give the files with {option('train_file')} / {option('test_file')}"
        )
    return found


def training_file(args) -> str | None:
    """The file the training split is read from: --train_file, or the train file of a local --dataset_name folder
    (what a resumed run checks is unchanged)."""
    if args.train_file or not (args.dataset_name and Path(args.dataset_name).is_dir()):
        return args.train_file
    found = local_dataset_files(Path(args.dataset_name)).get("train")
    return str(found) if found else None


def raw_splits(args) -> tuple[dict[str, Records], dict[str, Any]]:
    """Records per split as given (files or hub), before any splitting; plus where each came from."""
    if args.dataset_name and Path(args.dataset_name).is_dir():  # a local folder: its files, hashed like any file
        files = local_dataset_files(Path(args.dataset_name))
        read = {name: read_source(path, args.data_format) for name, path in files.items()}
        return {name: records for name, (records, _) in read.items()}, {name: src for name, (_, src) in read.items()}
    if args.dataset_name:
        hub = load_hub_dataset(args.dataset_name, args.dataset_config_name)
        aliases = {
            "train": "train",
            "validation": "validation",
            "valid": "validation",
            "dev": "validation",
            "test": "test",
        }
        records = {aliases[name]: rows for name, rows in hub.items() if name in aliases}
        return records, {"dataset": args.dataset_name, "config": args.dataset_config_name}
    files = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}
    if not any(files.values()):
        raise InputError(
            f"no data: give {option('train_file')} (to train and split), {option('test_file')} (to predict) or "
            f"{option('dataset_name')}"
        )
    read = {name: read_source(Path(path), args.data_format) for name, path in files.items() if path}
    return {name: records for name, (records, _) in read.items()}, {name: source for name, (_, source) in read.items()}
