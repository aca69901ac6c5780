"""Whether the config (and environment) turn monitoring on: stdlib only, so the CLI can ask
without importing prometheus_client, apprise or the monitoring modules."""

from __future__ import annotations

from bot.config import Config
from bot.logs import alert_urls_in_force


def alert_urls(cfg: Config) -> tuple[str, ...]:
    """``ALLOCBOT_ALERT_URLS`` (whitespace/comma separated) when set, else ``[alerts] urls``."""
    return alert_urls_in_force(cfg.alerts.urls)


def monitoring_configured(cfg: Config) -> bool:
    """A metrics or page port, or at least one alert URL."""
    mon = cfg.monitoring
    return mon.metrics_port is not None or mon.http_port is not None or bool(alert_urls(cfg))
