"""How every command runs: the toolkit's errors become one `error:` line on stderr and an exit code
(2: the user can fix the input, 1: a failure while running, 130: interrupted), signals stop a stage
with a line that says how to go on. Only `main` functions of bioqa.cli return exit codes."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable

from bioqa.errors import InputError, Interrupted, RunError, options_spelled_as_flags, short

ERROR_LINE_LIMIT = 2000  # an error line quotes input; whatever it quotes, the line stays readable
EXIT_CODES = ((Interrupted, 130), (InputError, 2), (RunError, 1))  # most specific first


def exit_code(exc: BaseException) -> int:
    return next(code for kind, code in EXIT_CODES if isinstance(exc, kind))


def run_main(main: Callable[[], int]) -> int:
    """Run a command's body; expected errors become one `error:` line and an exit code."""
    try:
        with options_spelled_as_flags():
            return main()
    except (InputError, RunError) as exc:
        close_progress_bars()
        print(f"error: {short(str(exc), ERROR_LINE_LIMIT)}", file=sys.stderr)
        return exit_code(exc)
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

    how = (
        "continue with the same command plus --resume_from_checkpoint latest"
        if resumable
        else "nothing was written; run the same command again"
    )

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
