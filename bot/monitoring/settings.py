"""Whether the config (and environment) turn monitoring on: stdlib only, so the CLI can ask
without importing prometheus_client, apprise or the monitoring modules."""

from __future__ import annotations

from bot.config import Config
from bot.errors import ConfigError
from bot.logs import ALERT_URLS_ENV, alert_urls_in_force

URLS_KEY = "[alerts].urls"


def alert_urls(cfg: Config) -> tuple[str, ...]:
    """``ALLOCBOT_ALERT_URLS`` (whitespace/comma separated) when set, else ``[alerts] urls``."""
    return alert_urls_in_force(cfg.alerts.urls)


def alert_urls_key() -> str:
    """Where the alert URLs in force come from, as errors name it: the environment's win."""
    return ALERT_URLS_ENV if alert_urls_in_force(()) else URLS_KEY


def invalid_alert_urls_error(positions: list[int], count: int) -> ConfigError:
    """The error for alert URLs apprise cannot parse, named by position (never shown: they
    hold tokens); no positions: apprise is not installed."""
    key = alert_urls_key()
    if not positions:
        return ConfigError(f"{key}: alerts need apprise, which is not installed: "
                           "pip install 'allocbot[monitoring]'")
    which = ("URL " if len(positions) == 1 else "URLs ") + ", ".join(map(str, positions))
    return ConfigError(
        f"{key}: apprise cannot parse {which} of {count} (by position: alert URLs hold "
        "tokens and are never shown); each must be an apprise URL such as "
        "json://host:port/path or slack://..., with its scheme")


def check_alert_urls(cfg: Config) -> None:
    """``ConfigError`` when apprise cannot parse one of the alert URLs in force (or is not
    installed while there are some): ``allocbot check-config`` says so, as the daemon's
    start does (``sender.build_channels``), instead of the first alert finding out."""
    urls = alert_urls(cfg)
    if not urls:
        return
    from bot.monitoring.sender import unparseable_positions  # imports apprise

    try:
        bad = unparseable_positions(urls)
    except ModuleNotFoundError:
        raise invalid_alert_urls_error([], len(urls)) from None
    if bad:
        raise invalid_alert_urls_error(bad, len(urls))


def monitoring_configured(cfg: Config) -> bool:
    """A metrics or page port, or at least one alert URL."""
    mon = cfg.monitoring
    return mon.metrics_port is not None or mon.http_port is not None or bool(alert_urls(cfg))
