"""Every command a test runs has a time limit (tests/conftest.py): a hang fails the test with the command's last
output, and a command given its own limit keeps it."""

import subprocess
import sys

import pytest


def test_a_command_that_hangs_fails_with_its_last_output(monkeypatch):
    monkeypatch.setattr(subprocess.run, "default_timeout", 1)
    code = (
        "import sys, time; print('step 3 of 8', flush=True); print('loading', file=sys.stderr, flush=True); "
        "time.sleep(30)"
    )
    with pytest.raises(pytest.fail.Exception) as failed:
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    message = str(failed.value)
    assert "ran past 1 s" in message and "step 3 of 8" in message and "loading" in message


def test_a_limit_given_is_kept():
    with pytest.raises(pytest.fail.Exception, match="ran past 0.5 s"):
        subprocess.run([sys.executable, "-c", "import time; time.sleep(30)"], capture_output=True, timeout=0.5)
    assert subprocess.run([sys.executable, "-c", "pass"]).returncode == 0
