"""How every command runs: the toolkit's errors become one `error:` line on stderr and an exit code
(2: the user can fix the input, 1: a failure while running, 130: interrupted), signals stop a stage
with a line that says how to go on. Only `main` functions of bioqa.cli return exit codes."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable

from bioqa import compat
from bioqa.errors import (
    InputError,
    Interrupted,
    RunError,
    interrupt_on_signal,
    options_spelled_as_flags,
    short,
)

ERROR_LINE_LIMIT = 2000  # an error line quotes input; whatever it quotes, the line stays readable
EXIT_CODES = ((Interrupted, 130), (InputError, 2), (RunError, 1))  # most specific first


def exit_code(exc: BaseException) -> int:
    return next(code for kind, code in EXIT_CODES if isinstance(exc, kind))


def run_main(main: Callable[[], int]) -> int:
    """Run a command's body; expected errors become one `error:` line and an exit code. SIGTERM and SIGHUP (a
    closed terminal) end it as SIGINT does, by an exception: staged folders, temporary files and the lock are
    removed on the way out (stages that can do better, such as training's checkpoint, set their own handlers)."""
    try:
        with options_spelled_as_flags(), interrupt_on_signal("the run", resumable=False):
            return main()
    except (InputError, RunError) as exc:
        close_progress_bars()
        print(f"error: {short(str(exc), ERROR_LINE_LIMIT)}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        close_progress_bars()
        print("error: interrupted; nothing partial was kept; run the same command again", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        if not peer_lost(exc):
            raise
        close_progress_bars()
        print(
            f"error: another process of this distributed run ended ({short(str(exc), 160)}); this one stopped too: "
            "the first error above is the cause; fix it and go on with the same command plus "
            "--resume_from_checkpoint latest",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:  # the file system refused a write: a full disk, a quota, a vanished mount
        close_progress_bars()
        print(f"error: {short(file_system_error(exc), ERROR_LINE_LIMIT)}", file=sys.stderr)
        return 1


# What gloo and NCCL raise (as plain RuntimeError) in a collective whose peer process is gone (torch 2.13).
PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "remote process exited")


def peer_lost(exc: RuntimeError) -> bool:
    """A collective failed because another process of the distributed run died (torchrun / accelerate launch)."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return False
    return isinstance(exc, getattr(dist, "DistError", ())) or any(text in str(exc) for text in PEER_LOST)


def file_system_error(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"no space left on the device{where}; the partial files were removed and earlier outputs are as they "
            "were: free some space (or choose another --output_dir) and run the same command again"
        )
    return f"{exc.strerror or exc}{where}; the partial files were removed; fix that and run the same command again"


def close_progress_bars() -> None:
    """An exception leaves tqdm bars open mid-line; closing them ends the line, so `error:` starts its own."""
    for bar in compat.open_progress_bars():
        bar.close()
