"""What ``allocbot init`` writes: the shipped starter config and the deploy templates.

``config.toml`` here is the one that ships (the repository's top-level ``config.toml`` is
an identical copy, checked by a test); ``allocbot.service``, ``compose.yaml`` are
templates of ``deploy/``'s files with the paths to fill in (also checked identical).
"""

from pathlib import Path

STARTER_DIR = Path(__file__).resolve().parent
STARTER_CONFIG = STARTER_DIR / "config.toml"
SYSTEMD_UNIT = STARTER_DIR / "allocbot.service"
COMPOSE_FILE = STARTER_DIR / "compose.yaml"
