"""``allocbot weights``: the strategy's target weights after the risk step, as plain data."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bot.cli.startup import config_option, fail_on, load
from bot.errors import AllocbotError, BrokerDataError

if TYPE_CHECKING:
    from bot.config import Config


def target_weights_report(cfg: Config, prices_path: Path, asof: date | None) -> dict[str, Any]:
    """Weights as of ``asof`` (default: the last date in the file), using only rows ≤ asof."""
    from bot.engine.targets import check_history_rows, risk_checked_targets, risk_limits
    from brokers.prices import load_universe_prices

    prices, symbols = load_universe_prices(prices_path, cfg.universe.symbols)
    prices = prices.loc[:, list(symbols)]
    if asof is not None:
        first = prices.index[0].date()
        if asof < first:
            raise BrokerDataError(f"--asof {asof} is before the first date in {prices_path} ({first})")
        prices = prices.loc[: str(asof)]
    strategy, limits = cfg.build_strategy(), risk_limits(cfg)
    check_history_rows(prices, strategy, limits, str(prices_path))
    _, decision = risk_checked_targets(strategy, prices, tuple(symbols), limits,
                                       cfg.universe.exclude)
    final = {str(s): round(float(w), 10) for s, w in decision.weights.items()}
    return {
        "asof": str(prices.index[-1].date()),
        "strategy": cfg.strategy.name,
        "weights": final,
        "cash": round(max(0.0, 1.0 - sum(final.values())), 10),
        "var": decision.var,
        "cvar": decision.cvar,
        "risk_interventions": [iv.rule for iv in decision.interventions],
    }


@click.command()
@config_option
@click.option("--prices", "prices_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Price CSV (default: the config's [sim].prices).")
@click.option("--asof", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Compute as of this date (default: the last date in the data).")
def weights(config_path: Path, prices_path: Path | None, asof: Any) -> None:
    """Print the strategy's target weights (after the risk step) as JSON."""
    cfg = load(config_path, logs_to_stderr=True)
    try:
        report = target_weights_report(cfg, prices_path or cfg.sim.prices,
                                       asof.date() if asof else None)
    except AllocbotError as exc:
        fail_on(exc)
    click.echo(json.dumps(report, indent=2))
