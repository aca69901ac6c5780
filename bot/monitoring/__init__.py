"""Watching the bot: health, status report, metrics, alerts and the status page.

May import bot.engine, bot.core and bot.config; bot.cli imports it; bot.engine never does.
Metrics and alerts observe the cycle through its structlog events (a tap in the logging
chain). Every third-party import (prometheus_client, apprise) happens inside the code that
needs it, so a daemon without a ``[monitoring]``/``[alerts]`` config loads none of them.
"""
