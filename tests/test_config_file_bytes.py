"""A config file whose bytes are not plain UTF-8 text: a Latin-1 byte in a comment, a UTF-8
byte-order mark (Windows Notepad), a path that cannot be read. Every command answers with one
line naming the file and the fix and exits 2 (bad config: the systemd unit's
RestartPreventExitStatus, so no restart loop), never a traceback and exit 1 (the real
entry point for check-config and run, the others in-process)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, run_cli_in_process

COMMANDS = [["check-config"], ["once"], ["status"], ["health"], ["run", "--max-cycles", "1"]]
# the real entry point's exit for two of them; the rest in-process (the same command code)
IN_PROCESS = {"once", "status", "health"}


def one_line(proc: Any) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return str(json.loads(lines[0])["error"])  # not a terminal: the startup_failed event


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_latin1_byte_in_a_comment_exits_2_naming_file_line_and_fix(
    command: list[str], write_config: Any
) -> None:
    path = write_config()
    text = path.read_bytes()
    path.write_bytes(text + "# café (saved by a Latin-1 editor)\n".encode("latin-1"))
    line = text.count(b"\n") + 1

    runner = run_cli_in_process if command[0] in IN_PROCESS else run_cli
    error = one_line(runner(*command, "--config", str(path)))

    assert str(path) in error
    assert f"byte 0xe9 at line {line}, column 6 (byte offset {len(text) + 5})" in error
    assert "save it as UTF-8" in error


def test_utf8_byte_order_mark_is_accepted(write_config: Any) -> None:
    path = write_config()
    plain = run_cli_in_process("check-config", "--config", str(path))
    assert plain.returncode == 0, plain.stderr
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())

    proc = run_cli_in_process("check-config", "--config", str(path))

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == plain.stdout  # the same config, read the same way


def test_unreadable_config_path_exits_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    os.symlink(path.name, path)  # a link to itself: reading it fails (ELOOP), as root too

    error = one_line(run_cli_in_process("check-config", "--config", str(path)))

    assert error.startswith(f"invalid config {path}: cannot read the config file {path}: ")
    assert "symbolic links" in error
