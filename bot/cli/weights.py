"""``allocbot weights``: the strategy's target weights after the risk step, as plain data."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bot.cli.startup import config_option, fail, fail_on, load
from bot.errors import AllocbotError, BrokerDataError, InputDataError

if TYPE_CHECKING:
    import pandas as pd

    from bot.config import Config
    from bot.core.risk import RiskLimits
    from strategies import Strategy


def target_weights_report(cfg: Config, prices_path: Path, asof: date | None) -> dict[str, Any]:
    """Weights as of ``asof`` (default: the last date in the file; a non-trading day inside
    it: the trading day before), using only rows ≤ asof; an unfit strategy is refused."""
    from bot.core.guards import check_data
    from bot.engine.preflight import check_universe_fit
    from bot.engine.targets import check_history_rows, risk_checked_targets, risk_limits
    from brokers.prices import load_universe_prices

    prices, symbols = load_universe_prices(prices_path, cfg.universe.symbols)
    prices = prices.loc[:, list(symbols)]
    check_universe_fit(cfg, tuple(symbols))
    strategy, limits = cfg.build_strategy(), risk_limits(cfg)
    whole = prices
    if asof is not None:
        prices = prices_up_to(prices, asof, prices_path)
    try:
        check_history_rows(prices, strategy, limits, str(prices_path))
    except InputDataError as exc:
        if asof is None:
            raise
        raise BrokerDataError(f"--asof {asof}: {exc}{first_asof_hint(whole, strategy, limits)}"
                              ) from None
    _, decision = risk_checked_targets(strategy, prices, tuple(symbols), limits,
                                       cfg.universe.exclude)
    final = {str(s): round(float(w), 10) for s, w in decision.weights.items()}
    # the data guards on the window's latest bar: a cycle that day would be blocked
    breaches = check_data(prices, 0, {}, cfg.guards.limits())
    return {
        "asof": str(prices.index[-1].date()),
        "strategy": cfg.strategy.name,
        "weights": final,
        "cash": round(max(0.0, 1.0 - sum(final.values())), 10),
        "var": decision.var,
        "cvar": decision.cvar,
        "risk_interventions": [iv.rule for iv in decision.interventions],
        **({"data_guard_breaches": [b.as_log() for b in breaches],
            "note": "a cycle on this day would be blocked by the data guard (nothing traded); "
                    "these weights are computed from that bar"} if breaches else {}),
    }


def prices_up_to(prices: pd.DataFrame, asof: date, prices_path: Path) -> pd.DataFrame:
    """The rows up to ``asof``, refused when ``asof`` lies outside the file (after its last
    date the weights would silently be the last date's)."""
    first, last = prices.index[0].date(), prices.index[-1].date()
    if not first <= asof <= last:
        raise BrokerDataError(f"--asof {asof} is outside the price data in {prices_path} "
                              f"({first} to {last})")
    return prices.loc[: str(asof)]


def first_asof_hint(prices: pd.DataFrame, strategy: Strategy, limits: RiskLimits) -> str:
    """Where the history ``check_history_rows`` asks for begins in ``prices``, if anywhere."""
    from bot.engine.targets import history_rows_needed

    needed = history_rows_needed(strategy, limits)
    if len(prices) < needed:
        return ""
    return f" (the first --asof with enough history is {prices.index[needed - 1].date()})"


@click.command()
@config_option
@click.option("--prices", "prices_path", type=click.Path(path_type=Path, dir_okay=False),
              default=None, help="Price CSV (default: the config's [sim].prices).")
@click.option("--asof", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Compute as of this date (default: the last date in the data).")
def weights(config_path: Path, prices_path: Path | None, asof: Any) -> None:
    """Print the strategy's target weights (after the risk step) as JSON."""
    from bot.engine.preflight import PreflightError

    cfg = load(config_path, logs_to_stderr=True)
    try:
        report = target_weights_report(cfg, prices_path or cfg.sim.prices,
                                       asof.date() if asof else None)
    except PreflightError as exc:  # the strategy cannot work with the prices' universe
        fail(f"invalid config {config_path}: {exc}")
    except AllocbotError as exc:
        fail_on(exc)
    click.echo(json.dumps(report, indent=2))
