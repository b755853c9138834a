"""What every entry script shares: arguments from dataclasses + YAML, errors as exit codes, run files.

* `parse_arguments`: `HfArgumentParser` over typed dataclasses, plus `--config run.yaml`. A YAML
  key is exactly a command-line flag name; the file is read as if its flags came first, so flags
  on the command line override it. Unknown keys and ill-typed values are errors that name the file.
* `UsageError` (exit 2) and `RunError` (exit 1) carry one line, `what; how to fix`; `run_main`
  turns them into `error: ...` on stderr. Only the entry scripts' `main` returns exit codes.
* Atomic writes (temporary file in the same folder, then rename), the resolved configuration and
  the run manifest (package versions, git commit, host, timings).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import enum
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from argparse import Action
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
MANIFEST_PACKAGES = ("torch", "transformers", "peft", "accelerate", "datasets", "tokenizers", "safetensors",
                     "bitsandbytes", "nltk", "rouge-score", "sacrebleu", "numpy")


ERROR_LINE_LIMIT = 2000  # an error line quotes input; whatever it quotes, the line stays readable


class UsageError(Exception):
    """Bad arguments, configuration or input files: the user can fix it (exit code 2)."""

    exit_code = 2


class RunError(Exception):
    """A failure while running, after the arguments were accepted (exit code 1)."""

    exit_code = 1


class Interrupted(RunError):
    """Stopped on SIGINT / SIGTERM after saving what can be resumed (exit code 130)."""

    exit_code = 130


def raise_problems(problems: list[str]) -> None:
    """Every invalid value at once: one UsageError listing them all (none: nothing happens)."""
    if len(problems) == 1:
        raise UsageError(problems[0])
    if problems:
        raise UsageError(f"{len(problems)} problems: " + " | ".join(problems))


def run_main(main: Callable[[], int]) -> int:
    """Run an entry script's body; expected errors become one `error:` line and an exit code."""
    try:
        return main()
    except (UsageError, RunError) as exc:
        close_progress_bars()
        print(f"error: {short(str(exc), ERROR_LINE_LIMIT)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        close_progress_bars()
        print("error: interrupted", file=sys.stderr)
        return 130


@contextlib.contextmanager
def stop_on_signal(stage: str, resumable: bool):
    """SIGINT / SIGTERM during `stage` stop it at once with Interrupted (exit 130): nothing of the stage is
    written (its files are written atomically at its end), and the line says how to go on."""
    import signal
    import threading

    how = ("continue with the same command plus --resume_from_checkpoint latest" if resumable
           else "nothing was written; run the same command again")

    def handle(signum, frame):
        raise Interrupted(f"stopped by {signal.Signals(signum).name} during {stage}; {how}")

    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield
        return
    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def close_progress_bars() -> None:
    """An exception leaves tqdm bars open mid-line; closing them ends the line, so `error:` starts its own."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


# ----------------------------------------------------------------------------- arguments


def _parser_class():
    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        """HfArgumentParser whose errors raise UsageError instead of printing usage and exiting."""

        def error(self, message: str):
            raise UsageError(f"{message}; see --help")

    return Parser


def build_parser(dataclass_types: Sequence[type], description: str):
    parser = _parser_class()(dataclass_types, description=description)
    parser.add_argument("--config", metavar="RUN.yaml", default=None,
                        help="YAML file of options (keys are these flag names); flags given on the command line override it")
    return parser


def parse_arguments(parser, argv: Sequence[str] | None) -> tuple:
    """Parse `argv` (default sys.argv[1:]) with `--config` YAML underneath; return the dataclasses."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config = _config_path(argv)
    file_argv = _yaml_to_argv(config, parser) if config else []
    if file_argv:
        try:
            parser.parse_known_args(file_argv)
        except UsageError as exc:
            raise UsageError(f"{config}: {exc}") from None
    try:
        *objects, _config, remaining = parser.parse_args_into_dataclasses(args=file_argv + argv,
                                                                          return_remaining_strings=True)
    except ValueError as exc:  # a dataclass's own validation (e.g. TrainingArguments.__post_init__)
        raise UsageError(f"{short(str(exc), 500)}; see --help") from None
    if remaining:
        flag = next((t for t in remaining if t.startswith("--")), remaining[0])
        raise UsageError(f"unrecognized arguments: {' '.join(remaining)}; {_suggest(flag.lstrip('-'), parser)}")
    return tuple(objects)


def _options(parser) -> dict[str, Action]:
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest not in ("help", "config")}


def _suggest(name: str, parser) -> str:
    close = difflib.get_close_matches(name.split("=")[0], _options(parser), n=2)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else "see --help for the options"


def _config_path(argv: list[str]) -> Path | None:
    found = [argv[i + 1] for i, token in enumerate(argv[:-1]) if token == "--config"]
    found += [token.split("=", 1)[1] for token in argv if token.startswith("--config=")]
    if len(found) > 1:
        raise UsageError(f"--config given {len(found)} times ({', '.join(found)}); give one file (put the options of "
                         "both in it), and override single options with flags")
    return Path(found[0]) if found else None


def _yaml_to_argv(path: Path, parser) -> list[str]:
    import yaml

    if not path.is_file():
        raise UsageError(f"config file {path} not found; check the --config path")
    try:
        data = load_yaml(read_text(path, "the config file"))
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is not valid YAML ({short(str(exc), 200)}); fix the file") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a mapping of option: value, not {type(data).__name__}")
    options = _options(parser)
    argv: list[str] = []
    for key, value in data.items():
        if key not in options:
            raise UsageError(f"{path}: unknown key {short(repr(key), 60)}; {_suggest(str(key), parser)}")
        _check_yaml_value(path, key, options[key], value)
        argv += _flag_tokens(options[key], key, value)
    return argv


YAML_MAX_VALUES = 10_000  # far above any config; a few nested aliases ("billion laughs") expand beyond it


def load_yaml(text: str) -> Any:
    """YAML as yaml.safe_load reads it, but a key given twice, or aliases expanding to more than
    YAML_MAX_VALUES values, are errors instead of last-one-wins and a huge document."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    break  # an unhashable key: SafeLoader's own error names it
                if key in seen:
                    raise yaml.YAMLError(f"key {short(repr(key), 60)} is given twice (again on line "
                                         f"{key_node.start_mark.line + 1}); keep one")
                seen.add(key)
            return super().construct_mapping(node, deep)

    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        if _expanded_size(node, YAML_MAX_VALUES) > YAML_MAX_VALUES:
            raise yaml.YAMLError(f"its aliases expand to more than {YAML_MAX_VALUES} values; write the values out")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: Any, limit: int) -> int:
    """Values in the document with every alias expanded, counted up to just past `limit`."""
    count, stack = 0, [node]
    while stack and count <= limit:
        current = stack.pop()
        count += 1
        if isinstance(current.value, list):
            stack += [part for item in current.value for part in (item if isinstance(item, tuple) else (item,))]
    return count


def _check_yaml_value(path: Path, key: str, action: Action, value: Any) -> None:
    """A YAML value the option cannot take, named with the file, the key and the expected type."""
    many = action.nargs in ("+", "*")
    expected = f"one of {', '.join(map(str, action.choices))}" if action.choices else \
        f"{'a list of ' if many else 'one '}{getattr(action.type, '__name__', 'text')} value{'s' if many else ''}"
    if isinstance(value, (list, tuple)) and len(value) > 1 and not many:  # [x] is x (report_to: [tensorboard])
        raise UsageError(f"{path}: key {key!r} is a list ({shown(value)}), but it takes {expected}; see --help")
    if action.choices and value is not None and str(value) not in map(str, action.choices):
        hint = " (YAML reads unquoted yes, no, on, off, true, false as booleans: quote the word)" \
            if isinstance(value, bool) else ""
        raise UsageError(f"{path}: key {key!r} is {shown(value)}{hint}, but it takes {expected}; see --help")


def _flag_tokens(action: Action, key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool):
        return [f"--{key}", "true" if value else "false"]
    if isinstance(value, dict):
        return [f"--{key}", json.dumps(value)]
    if isinstance(value, (list, tuple)):
        return [f"--{key}", *map(str, value)] if value else []
    return [f"--{key}", str(value)]


def config_dict(*objects: Any) -> dict[str, Any]:
    """Every option of the parsed dataclasses, as plain YAML-able values (reusable as --config)."""
    result: dict[str, Any] = {}
    for obj in objects:
        for field in dataclasses.fields(obj):
            if field.init and not field.name.startswith("_"):
                result[field.name] = _plain(getattr(obj, field.name))
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):  # TrainingArguments' strategies and scheduler types
        return _plain(value.value)
    if dataclasses.is_dataclass(value):  # e.g. TrainingArguments.accelerator_config
        return _plain(dataclasses.asdict(value))
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


# ----------------------------------------------------------------------------- files


def write_text_atomic(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private (0600); give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
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


def read_text(path: Path, what: str = "the file") -> str:
    """A UTF-8 text file, a byte-order mark dropped; UsageError naming the file if it is not UTF-8 or unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text (byte {exc.start}); re-save {what} as UTF-8") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}; check its permissions") from None


def text_lines(text: str) -> list[str]:
    """Lines split on \\n (and \\r\\n) only: JSON strings and text may hold U+2028, U+2029, U+0085 or a
    form feed, which str.splitlines() would also split on. A final newline ends the last line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def parse_jsonl(text: str, path: Path, fix: str) -> list[dict]:
    """The JSON objects of a .jsonl text, blank lines skipped; UsageError naming the line, ending with `fix`."""
    records = []
    for number, line in enumerate(text_lines(text), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path} line {number} is not valid JSON ({exc.msg}); {fix}") from None
        if not isinstance(record, dict):
            raise UsageError(f"{path} line {number} is a JSON {type(record).__name__}, expected an object; {fix}")
        records.append(record)
    return records


def read_json(path: Path, what: str) -> Any:
    """A JSON file the toolkit relies on (a config, a report, a trainer state); a damaged one is a UsageError
    naming it and `what` it is."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{path} ({what}) is damaged: not valid JSON ({short(str(exc), 120)}); copy it again "
                         "from where it came from") from None


def read_run_config(path: Path) -> dict[str, Any]:
    """A run_config.yaml that config_dict() wrote (the options of a run); a damaged one is a UsageError."""
    import yaml

    try:
        config = yaml.safe_load(read_text(path, "the run's configuration"))
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is damaged ({short(str(exc), 120)}); restore it from the run, or remove it") from None
    return config if isinstance(config, dict) else {}


def short(text: str, limit: int = 300) -> str:
    """One line of at most `limit` characters: error lines stay readable whatever they quote."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[:limit - 5] + " ..."


def shown(value: Any, limit: int = 60) -> str:
    """A value from the user's data or config as JSON writes it (null, true, [8, 16]), cut for an error line."""
    return short(json.dumps(value, default=str, ensure_ascii=False), limit)


@contextlib.contextmanager
def staged_folder(target: Path):
    """A fresh folder beside `target` to write into; on success it replaces `target` in one rename.

    On any failure the folder is removed and `target` is left as it was: never a half-written output.
    """
    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        previous = target.parent / f".{target.name}.previous-{os.getpid()}"
        os.replace(target, previous)
        os.replace(staging, target)
        shutil.rmtree(previous, ignore_errors=True)
    else:
        os.replace(staging, target)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KB on Linux


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------- manifest


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def base_manifest(argv: Sequence[str] | None) -> dict[str, Any]:
    return {
        "command": [Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)],
        "started_at": utc_now(),
        "toolkit_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
    }
