"""``allocbot init [DIR] [--deploy systemd|docker]``: a starter config and deploy files.

Writes the shipped, commented ``config.toml`` (from the package, so it works from a wheel
outside any checkout) and, on request, the systemd unit or compose file with this
install's paths filled in. Never overwrites a file unless ``--force``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from bot.cli.startup import fail
from bot.starter import COMPOSE_FILE, STARTER_CONFIG, SYSTEMD_UNIT

UNIT_BINARY = "/opt/allocbot/venv/bin/allocbot"  # the template's paths, replaced on write
UNIT_CONFIG = "/etc/allocbot/config.toml"
_HIDDEN_FROM_SERVICE = ("/home/", "/root/", "/run/user/", "/tmp/", "/var/tmp/")  # ProtectHome, PrivateTmp


def allocbot_executable() -> Path:
    """The ``allocbot`` script of the running install (beside this Python), else PATH's."""
    beside = Path(sys.executable).parent / "allocbot"
    if beside.exists():
        return beside.absolute()
    found = shutil.which("allocbot")
    return Path(found).absolute() if found else Path(UNIT_BINARY)


def render_systemd_unit(config_path: Path, executable: Path) -> str:
    """The shipped unit with ExecStart pointing at ``executable`` and ``config_path``."""
    text = SYSTEMD_UNIT.read_text(encoding="utf-8")
    return (f"# written by `allocbot init` for {config_path}\n"
            + text.replace(UNIT_BINARY, str(executable)).replace(UNIT_CONFIG, str(config_path)))


def planned_files(target: Path, deploy: str | None) -> dict[Path, str]:
    """File → content that ``init`` writes into ``target``."""
    config = target / "config.toml"
    files = {config: STARTER_CONFIG.read_text(encoding="utf-8")}
    if deploy == "systemd":
        files[target / "allocbot.service"] = render_systemd_unit(config, allocbot_executable())
    elif deploy == "docker":
        files[target / "compose.yaml"] = COMPOSE_FILE.read_text(encoding="utf-8")
    return files


@click.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=Path("."))
@click.option("--deploy", type=click.Choice(["systemd", "docker"]), default=None,
              help="Also write the systemd unit or the compose file, paths filled in.")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init(directory: Path, deploy: str | None, force: bool) -> None:
    """Write a commented starter config.toml (and deploy files) into DIRECTORY."""
    target = directory.absolute()
    files = planned_files(target, deploy)
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        fail(f"{', '.join(existing)} already exists; pass --force to overwrite")
    try:
        target.mkdir(parents=True, exist_ok=True)
        for path, text in files.items():
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write into {target}: {exc.strerror or exc}")
    for path in files:
        click.echo(f"wrote {path}")
    click.echo(f"next: allocbot check-config --config {target / 'config.toml'}; "
               f"allocbot run --config {target / 'config.toml'}")
    if deploy == "systemd":
        _systemd_hints(target, allocbot_executable())
    elif deploy == "docker":
        click.echo("next: build the image (docker build -f deploy/Dockerfile -t allocbot:0.1.0 . "
                   f"in the source tree), then: cd {target} && docker compose up -d")


def _systemd_hints(target: Path, executable: Path) -> None:
    unit = target / "allocbot.service"
    click.echo(f"next: sudo cp {unit} /etc/systemd/system/ && sudo systemctl daemon-reload "
               "&& sudo systemctl enable --now allocbot")
    hidden = [str(p) for p in (target, executable)
              if str(p).startswith(_HIDDEN_FROM_SERVICE)]
    if hidden:
        click.echo(f"warning: {', '.join(hidden)} is under a home or temporary directory, which "
                   "the unit hides from the service (ProtectHome=, PrivateTmp=): install under /opt and /etc "
                   "(e.g. allocbot init /etc/allocbot --deploy systemd)", err=True)
