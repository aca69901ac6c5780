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

from bot.research.study import JOURNAL_FILE
from tests.conftest import REPO
from tests.research_setup import write_config, write_market, write_space

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


def _wait_for_file(path: Path, proc: subprocess.Popen[str]) -> None:
    """Return once ``proc`` has created ``path`` (it must still be running)."""
    deadline = time.monotonic() + TIMEOUT_SECS
    while not path.exists():
        assert proc.poll() is None, f"the command ended before writing {path}: " \
                                    f"{proc.communicate()}"
        assert time.monotonic() < deadline, f"the command never wrote {path}"
        time.sleep(0.02)


def test_an_interrupted_sweep_suggests_resume_only_once_it_saved_a_study(tmp_path):
    """Interrupted before it wrote anything to --out, the sweep said "`--resume --out DIR`
    continues", and that resume was refused (no study.journal to resume). It now says
    nothing was saved and to rerun the command; once the study journal is in --out (a
    plain rerun is then refused), it suggests --resume."""
    out = tmp_path / "out"
    space = write_space(tmp_path)
    early = ctrl_c_while_loading_config(tmp_path, ["sweep", "--space", str(space),
                                                   "--out", str(out)])
    assert early.returncode == 130, early.stderr
    assert _plain_lines(early.stderr) == [
        f"allocbot: interrupted; nothing was saved to {out} yet; run the same command to "
        "start the sweep"], early.stderr
    (tmp_path / "resume").mkdir()
    resumed = ctrl_c_while_loading_config(tmp_path / "resume", [
        "sweep", "--space", str(space), "--out", str(out), "--resume"])
    assert resumed.returncode == 130, resumed.stderr
    assert _plain_lines(resumed.stderr) == [
        f"allocbot: interrupted; nothing was saved to {out} yet; run the same command "
        "without --resume to start the sweep"], resumed.stderr

    market = tmp_path / "market"
    market.mkdir()
    config = write_config(market, write_market(market))
    with _command(["sweep", "--config", str(config), "--space", str(space), "--out", str(out),
                   "--jobs", "1", "--trials", "400"]) as proc:
        _wait_for_file(out / JOURNAL_FILE, proc)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=TIMEOUT_SECS)
    assert proc.returncode == 130, stderr
    assert _plain_lines(stderr) == [f"allocbot: interrupted; `--resume --out {out}` continues"]
