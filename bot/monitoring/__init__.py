"""Monitoring: Prometheus metrics, alerts and the read-only status page.

It observes the cycle through its structlog events (a tap in the logging chain) and never
the other way round: ``bot.engine`` does not import this package (an import contract).
Every third-party import (prometheus_client, apprise) happens inside the code that needs
it, so a daemon without a ``[monitoring]``/``[alerts]`` config loads none of them.
"""
