"""The toolkit's errors, and how their messages quote what they are about.

Library code raises `InputError` (bad arguments, configuration or input files: the caller can fix
them) or `RunError` (a failure while running, after the input was accepted). Each carries one line,
`what is wrong; how to fix it`. Only the command-line layer (`bioqa.cli`) prints them as `error:`
lines and chooses exit codes.

A message names a setting with `option("lora_r")`: the command-line layer spells settings as its
flags (`--lora_r`), a program calling the library sees the keyword argument's name (`lora_r`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from typing import Any


class BioqaError(Exception):
    """Any expected failure of the toolkit, with a message that says what to do."""


class InputError(BioqaError):
    """Bad arguments, configuration or input files: the caller can fix them."""


class RunError(BioqaError):
    """A failure while running, after the input was accepted."""


# The signals that stop a command cleanly (SIGHUP: its terminal was closed); Windows has no SIGHUP.
STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def stop_signals() -> list:
    """The STOP_SIGNALS this platform has, as signal numbers."""
    import signal

    return [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]


class Interrupted(RunError):
    """Stopped on SIGINT / SIGTERM after saving what can be resumed."""


_option_prefix = ""  # process-wide, not a context variable: worker threads must spell settings the same way


def option(name: str) -> str:
    """A setting's name as the caller spells it: `--name` on the command line, `name` in Python."""
    return _option_prefix + name


@contextlib.contextmanager
def options_spelled_as_flags() -> Iterator[None]:
    """The command-line layer runs a command inside this: its messages name settings by their flags."""
    global _option_prefix
    previous, _option_prefix = _option_prefix, "--"
    try:
        yield
    finally:
        _option_prefix = previous


@contextlib.contextmanager
def interrupt_on_signal(stage: str, resumable: bool):
    """SIGINT / SIGTERM / SIGHUP during `stage` stop it at once with Interrupted (exit 130): nothing of the stage
    is written (its files are written atomically at its end), and the line says how to go on."""
    import signal
    import threading

    how = resume_hint() if resumable else f"nothing partial was kept; {rerun_hint()}"

    def handle(signum, frame):
        raise Interrupted(f"stopped by {signal.Signals(signum).name} during {stage}; {how}")

    if threading.current_thread() is not threading.main_thread():  # handlers can only be set there
        yield
        return
    previous = {sig: signal.signal(sig, handle) for sig in stop_signals()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def option_off(name: str) -> str:
    """How the caller turns a true/false setting off: `--no_name` on the command line, `name=False` in Python."""
    return f"{_option_prefix}no_{name}" if _option_prefix else f"{name}=False"


def spelled_for_the_caller(text: str) -> str:
    """Another library's message (argparse, transformers) names settings as flags; a Python caller sees the names."""
    import re

    return text if _option_prefix else re.sub(r"(?<![\w-])--([a-z][a-z0-9_]*)", r"\1", text)


def rerun_hint() -> str:
    """What to do after a stop that kept nothing: the same command again, or the same call."""
    return "run the same command again" if _option_prefix else "make the same call again"


def resume_hint() -> str:
    """How to continue an interrupted training run, as the caller would: the same command with a flag, or the same
    call with a setting."""
    if _option_prefix:
        return f"continue with the same command plus {option('resume_from_checkpoint')} latest"
    return "continue with the same call and resume_from_checkpoint='latest'"


def help_hint() -> str:
    """Where the caller finds every setting and its help: `--help` on the command line, `Recipe.help()` in Python."""
    return f"see {option('help')}" if _option_prefix else "see bioqa.Recipe.help()"


def did_you_mean(name: str, known: Iterable[str]) -> str | None:
    """ "did you mean 'a' or 'b'?" for the one or two known names closest to a mistyped one; None if none is close."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=2)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else None


def raise_problems(problems: list[str]) -> None:
    """Every invalid value at once: one InputError listing them all (none: nothing happens)."""
    if len(problems) == 1:
        raise InputError(problems[0])
    if problems:
        raise InputError(f"{len(problems)} problems: " + " | ".join(problems))


def short(text: str, limit: int = 300) -> str:
    """One line of at most `limit` characters: error lines stay readable whatever they quote."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 5] + " ..."


def shown(value: Any, limit: int = 60) -> str:
    """A value from the user's data or config as JSON writes it (null, true, [8, 16]), cut for an error line."""
    return short(json.dumps(value, default=str, ensure_ascii=False), limit)
