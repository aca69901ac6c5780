"""Ctrl-C during ``allocbot sweep`` and ``allocbot compare``, in a real ``python -m bot``
process: whenever it lands (while the command still loads its config, too) the command
ends with one ``allocbot: interrupted; ...`` line saying what to run next, and exit 130."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import REPO

TIMEOUT_SECS = 60


def _plain_lines(stderr: str) -> list[str]:
    """stderr less its JSON log lines: what a person reads."""
    lines = []
    for line in stderr.splitlines():
        try:
            if isinstance(json.loads(line), dict):
                continue
        except ValueError:
            pass
        if line.strip():
            lines.append(line)
    return lines


def _open_writer_once_read(fifo: Path, proc: subprocess.Popen[str]) -> int:
    """The FIFO's write end, opened once ``proc`` has opened it to read: a non-blocking
    open for writing fails (ENXIO) until a reader has it open, which proves ``proc`` is
    reading it (and, with no data written, stays blocked in that read)."""
    deadline = time.monotonic() + TIMEOUT_SECS
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
        assert proc.poll() is None, f"the command ended before reading {fifo}: " \
                                    f"{proc.communicate()}"
        assert time.monotonic() < deadline, f"the command never opened {fifo}"
        time.sleep(0.02)


@contextmanager
def _command(args: list[str]) -> Iterator[subprocess.Popen[str]]:
    """``python -m bot ARGS`` in a child process, killed if a test leaves it running."""
    proc = subprocess.Popen([sys.executable, "-m", "bot", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=TIMEOUT_SECS)


def ctrl_c_while_loading_config(tmp_path: Path, args: list[str]
                                ) -> subprocess.CompletedProcess[str]:
    """Run ``allocbot ARGS --config FIFO`` and press Ctrl-C (SIGINT) while the command is
    reading its config file, a FIFO nothing is written to: the first thing the command
    does, before any research starts."""
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)
    with _command([*args, "--config", str(fifo)]) as proc:
        writer = _open_writer_once_read(fifo, proc)
        try:
            proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=TIMEOUT_SECS)
        finally:
            os.close(writer)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_ctrl_c_while_a_sweep_loads_its_config_exits_130_with_allocbots_line(tmp_path):
    """It printed click's "Aborted!" and exited 1 (the sweep handled Ctrl-C only once its
    research had begun): a script or an operator could not tell it from a failure."""
    proc = ctrl_c_while_loading_config(
        tmp_path, ["sweep", "--space", str(tmp_path / "space.toml"),
                   "--out", str(tmp_path / "out")])
    assert proc.returncode == 130, proc.stderr
    lines = _plain_lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("allocbot: interrupted; "), proc.stderr
    assert "Aborted!" not in proc.stderr and "Traceback" not in proc.stderr


def test_ctrl_c_during_compare_exits_130_and_says_to_run_it_again(tmp_path):
    """``compare`` had no Ctrl-C handling at all: "Aborted!", exit 1."""
    out = tmp_path / "cmp"
    proc = ctrl_c_while_loading_config(tmp_path, ["compare", "equal_weight", "--out", str(out)])
    assert proc.returncode == 130, proc.stderr
    assert _plain_lines(proc.stderr) == [
        f"allocbot: interrupted; the comparison in {out} is incomplete; run the same command "
        "again (it starts over)"], proc.stderr
