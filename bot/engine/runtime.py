"""Composition root: turn a validated Config into a broker, a journal and a cycle context.

The only place that knows which adapter a config selects; errors here happen before any
order can be sent.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from bot.config import Config
from bot.core.rebalance import RebalancePolicy
from bot.core.risk import below_drawdown_limit
from bot.core.signal import SignalSchedule
from bot.engine.cycle import CycleContext, CycleSettings
from bot.engine.instance_lock import InstanceLock
from bot.engine.journal import AccountIdentity, Journal
from bot.engine.preflight import check_config_references, replay_warmup_rows
from bot.engine.statuses import HALT_KEY, recorded_peak, recorded_transfers
from bot.engine.targets import risk_limits
from bot.errors import AllocbotError, ConfigError, LiveTradingNotConfirmed, StateError
from brokers.base import Account, Broker, masked_account_number
from brokers.prices import load_universe_prices
from brokers.sim.pricing import SimCosts

if TYPE_CHECKING:
    from brokers.alpaca.broker import AlpacaBroker

log = structlog.get_logger("allocbot.runtime")
LIVE_CONFIRM_ENV = "ALLOCBOT_CONFIRM_LIVE"
NEW_STATE_DIR_FIX = ("point [bot].state_dir at a new directory for this account (each account "
                     "keeps its own journal and peak)")


@dataclass(slots=True)
class Runtime:
    config: Config
    broker: Broker
    journal: Journal
    context: CycleContext
    lock: InstanceLock | None = None

    def close(self) -> None:
        try:
            self.broker.close()
            self.journal.close()
        finally:
            if self.lock is not None:
                self.lock.release()


def check_live_switches(cfg: Config, live_flag: bool) -> None:
    """Live trading needs both ``mode = "live"`` and ``--live``/ALLOCBOT_CONFIRM_LIVE=yes."""
    env_ok = os.environ.get(LIVE_CONFIRM_ENV, "").strip().lower() == "yes"
    confirmed = live_flag or env_ok
    if cfg.bot.mode == "live" and not confirmed:
        raise LiveTradingNotConfirmed(
            '[bot].mode is "live" but live trading was not confirmed: add --live on the '
            f"command line or set {LIVE_CONFIRM_ENV}=yes (real money will be traded)"
        )
    if confirmed and cfg.bot.mode != "live":
        source = "--live" if live_flag else f"{LIVE_CONFIRM_ENV}=yes"
        raise ConfigError(
            f'{source} was given but [bot].mode is "{cfg.bot.mode}": set mode = "live" in the '
            "config as well to trade real money, or drop the confirmation"
        )


def sim_account() -> AccountIdentity:
    """The simulator's account: one fixed number, known before its broker is opened."""
    from brokers.sim.broker import ACCOUNT_NUMBER

    return AccountIdentity("sim", ACCOUNT_NUMBER, "paper")


def alpaca_account(account: Account) -> AccountIdentity:
    """An Alpaca account as ``Broker.account`` reported it (paper: a "PA" number)."""
    from brokers.alpaca.broker import account_is_paper

    mode = "paper" if account_is_paper(account) else "live"
    return AccountIdentity("alpaca", account.account_number, mode)


def describe_account(account: AccountIdentity) -> str:
    """An account for messages and logs; a venue's number masked (all but the last 4)."""
    if account.broker == "sim":
        return f"the simulator's account {account.account_number}"
    return (f"{account.broker.capitalize()} {account.mode} account "
            f"{masked_account_number(account.account_number)}")


def bind_state_account(journal: Journal, account: AccountIdentity) -> None:
    """Tie the state file to ``account`` at its first writer open; at every later one refuse
    another account's state (``StateError``: exit 2) before its history is touched or an
    order is sent (the writer open has only redrawn the journal's instance id): its equity
    peak would trip (or loosen) the drawdown kill switch, its day's turnover would count
    against this account's, and both accounts' orders and cycles would mix in one journal.
    A file from before accounts were recorded adopts ``account``, saying so in the log."""
    recorded = journal.recorded_account()
    if recorded == account:
        return
    if recorded is not None:
        raise StateError(
            f"state file {journal.path} belongs to {describe_account(recorded)}, but this "
            f"config reaches {describe_account(account)}: {NEW_STATE_DIR_FIX}")
    has_history = bool(journal.recent_cycles(limit=1))
    journal.record_account(account)
    if has_history:  # written before accounts were recorded: whose it was is unknown
        log.warning("state_account_recorded", account=describe_account(account),
                    state_file=str(journal.path), adopted=True,
                    note="this state file was written before allocbot recorded its account "
                    "and now belongs to this one; if its cycles and equity peak are another "
                    f"account's, stop and {NEW_STATE_DIR_FIX}")
    else:
        log.info("state_account_recorded", account=describe_account(account),
                 state_file=str(journal.path), adopted=False)


def warn_drawdown_beyond_limit(journal: Journal, max_drawdown: float | None) -> None:
    """Warn (``drawdown_beyond_limit_at_start``) when the recorded equity peak and the last
    cycle's equity are already beyond ``max_drawdown`` (a limit just set or lowered): the
    first cycle will halt trading. Read-only; unreadable figures are the cycle's to report."""
    if max_drawdown is None or journal.meta(HALT_KEY):
        return
    try:
        peak = recorded_peak(journal)
        found = [c for f in ("equity_after", "equity") if (c := journal.latest_cycle(figure=f))]
    except AllocbotError:
        return
    if not found:
        return
    last = max(found, key=lambda c: str(c["started_at"]))  # as ``allocbot status`` values it
    equity = last["summary"].get("equity_after", last["summary"].get("equity"))
    if type(equity) not in (int, float) or not math.isfinite(equity):
        return
    try:  # a transfer applied after that valuation (its cycle failed) is in the peak
        transfers = recorded_transfers(journal)
    except AllocbotError:
        return
    if transfers is not None:
        equity += transfers.applied_between(str(last["finished_at"]), None)
    if not below_drawdown_limit(equity, peak, max_drawdown):
        return
    log.warning("drawdown_beyond_limit_at_start", drawdown=round(1 - equity / peak, 6),
                max_drawdown=max_drawdown, peak_equity=round(peak, 2), equity=round(equity, 2),
                asof=last["asof"], note="at this equity the first cycle halts trading "
                "(trading_halted) until 'allocbot rearm' resets the peak")


def build_broker(cfg: Config, read_only: bool = False) -> tuple[Broker, tuple[str, ...]]:
    """The configured adapter (behind the fault injector when ``[faults].enabled``) and
    the resolved universe. ``read_only``: a simulator that reads the stored account
    without writing (the Alpaca adapter has no local account); never fault-injected."""
    broker, universe = _build_adapter(cfg, read_only)
    if cfg.faults.enabled and not read_only:
        from brokers.faults import FaultInjectingBroker

        log.warning("faults_enabled", **cfg.faults.model_dump(exclude={"enabled"}),
                    note="drill/testing tool: the broker will fail on purpose")
        return FaultInjectingBroker(broker, cfg.faults.to_plan()), universe
    return broker, universe


def _build_adapter(cfg: Config, read_only: bool) -> tuple[Broker, tuple[str, ...]]:
    if cfg.broker.kind == "sim":
        from brokers.sim.broker import WARMUP_ROWS, SimulatedBroker

        prices, universe = load_universe_prices(cfg.sim.prices, cfg.universe.symbols)
        # The simulator gets every column, so holdings outside the universe still price.
        broker: Broker = SimulatedBroker(
            cfg.state_db, prices, starting_cash=cfg.sim.starting_cash, costs=sim_costs(cfg),
            fractional=cfg.sim.fractional, replay_start=cfg.sim.replay_start,
            warmup_rows=max(WARMUP_ROWS, replay_warmup_rows(cfg)), read_only=read_only,
        )
        return broker, universe
    if not cfg.universe.symbols:
        raise ConfigError('[universe].symbols: required with [broker].kind = "alpaca"')
    return build_alpaca_broker(cfg), cfg.universe.symbols


def _account_mismatch_fix(cfg: Config) -> str | None:
    """What to change when the keys reach the other kind of Alpaca account: a dry run says
    how ``[alpaca].account`` chooses (None: the keys or ``[bot] mode``)."""
    if cfg.bot.mode != "dry_run":
        return None
    if cfg.alpaca.account is None:
        return ('use the paper keys, or to rehearse on the live account set [alpaca].account '
                '= "live" (dry_run sends nothing)')
    other = "paper" if cfg.alpaca.account == "live" else "live"
    return (f'[alpaca].account = "{cfg.alpaca.account}" asks for the {cfg.alpaca.account} '
            f'account: use its keys, or set the key to "{other}" to dry-run on the {other} '
            "account")


def build_alpaca_broker(cfg: Config) -> AlpacaBroker:
    """Alpaca paper or live (``Config.live_account``) with keys from the environment."""
    from brokers.alpaca.broker import AlpacaBroker

    a = cfg.alpaca
    return AlpacaBroker.from_environment(
        paper=not cfg.live_account, feed=a.feed, base_url=a.base_url, data_url=a.data_url,
        cache_dir=cfg.bot.state_dir / "cache", http_timeout_secs=a.http_timeout_secs,
        retry_budget_secs=a.retry_budget_secs, poll_interval_secs=a.poll_interval_secs,
        retry_backoff_secs=a.retry_backoff_secs, retry_backoff_max_secs=a.retry_backoff_max_secs,
    )


def sim_costs(cfg: Config) -> SimCosts:
    """The simulator's commission and slippage from ``[sim]``."""
    s = cfg.sim
    return SimCosts(s.commission_bps, s.commission_min, s.slippage_bps)


def rebalance_policy(cfg: Config) -> RebalancePolicy:
    """Planner policy; on the simulator buys reserve its commission + slippage rate."""
    r = cfg.rebalance
    cost_bps = 0.0
    if cfg.broker.kind == "sim":  # slippage raises the price, commission is on the slipped notional
        c, sl = cfg.sim.commission_bps / 1e4, cfg.sim.slippage_bps / 1e4
        cost_bps = ((1 + c) * (1 + sl) - 1) * 1e4
    return RebalancePolicy(drift_abs=r.drift_abs, drift_rel=r.drift_rel, mode=r.mode,
                           min_order_notional=r.min_order_notional, cash_buffer=r.cash_buffer,
                           cost_bps_estimate=cost_bps)


def signal_schedule(cfg: Config) -> SignalSchedule:
    """``[strategy] signal`` / ``every_sessions``, else the strategy's own default."""
    s = cfg.strategy
    if s.every_sessions is not None:
        return SignalSchedule(frequency=None, every_sessions=s.every_sessions)
    frequency = s.signal or cfg.build_strategy().default_signal
    return SignalSchedule(frequency=frequency)  # type: ignore[arg-type]


def cycle_settings(cfg: Config, universe: tuple[str, ...]) -> CycleSettings:
    safe = cfg.risk.safe_asset
    if safe is not None and safe not in universe:
        raise ConfigError(f"[risk].safe_asset: {safe!r} is not in the universe {universe}")
    excluded = cfg.universe.exclude
    unknown = [sym for sym in excluded if sym not in universe]
    if unknown:
        raise ConfigError(f"[universe].exclude: {unknown} not in the universe {list(universe)}")
    if safe is not None and safe in excluded:
        raise ConfigError(f"[risk].safe_asset: {safe!r} is excluded by [universe].exclude")
    return CycleSettings(
        mode=cfg.bot.mode, universe=universe, order_prefix=cfg.bot.order_prefix,
        order_wait_secs=cfg.broker.order_wait_secs, policy=rebalance_policy(cfg),
        limits=risk_limits(cfg), signal=signal_schedule(cfg), excluded=excluded,
        max_drawdown=cfg.risk.max_drawdown,
        min_history_rows=cfg.alpaca.data_lookback_days if cfg.broker.kind == "alpaca" else 0,
        commission_min=cfg.sim.commission_min if cfg.broker.kind == "sim" else 0.0,
        fallback=cfg.build_fallback(), guards=cfg.guards.limits(),
    )


def open_runtime(cfg: Config, live_flag: bool = False, command: str = "run") -> Runtime:
    """Check the live switches, take the state dir's lock, open the journal and the broker,
    verify the account (its mode, and that the state file is its own: ``bind_state_account``).
    The lock is held until ``Runtime.close`` (or the process dies)."""
    check_live_switches(cfg, live_flag)
    check_config_references(cfg)  # every problem at once, before anything is opened
    lock = InstanceLock.acquire(cfg.bot.state_dir, command, cfg.source, cfg.source_digest)
    try:
        journal = Journal(cfg.state_db)
    except BaseException:
        lock.release()
        raise
    try:
        # Another account's state is refused before the simulator opens its own account in
        # the file, before the journal's history is touched and before any order is sent.
        if cfg.broker.kind == "sim":
            bind_state_account(journal, sim_account())
        broker, universe = build_broker(cfg)
        settings = cycle_settings(cfg, universe)
        strategy = cfg.build_strategy()
        if cfg.broker.kind == "alpaca":
            from brokers.alpaca.broker import check_account_mode, mask_account_number

            account = broker.account()  # the one account call: it also identifies the account
            check_account_mode(account, paper=not cfg.live_account,
                               fix=_account_mismatch_fix(cfg))
            bind_state_account(journal, alpaca_account(account))
            if cfg.bot.mode == "live":
                log.warning("live_trading_enabled", account=mask_account_number(account),
                            equity=round(account.equity, 2))
            elif cfg.live_account:
                log.info("dry_run_on_live_account", account=mask_account_number(account),
                         equity=round(account.equity, 2),
                         note="orders are journaled and logged, never sent")
    except BaseException:
        journal.close()
        lock.release()
        raise
    if cfg.faults.enabled:  # the fault drill may kill the process inside a journal write
        from brokers.faults import FaultInjectingBroker

        if isinstance(broker, FaultInjectingBroker):
            journal.write_hook = broker.journal_write_hook
    interrupted = journal.abandon_running_cycles()
    if interrupted:
        log.warning("cycles_interrupted", cycle_ids=interrupted,
                    note="a previous run stopped mid-cycle; reconciling with the broker")
    warn_drawdown_beyond_limit(journal, cfg.risk.max_drawdown)
    return Runtime(cfg, broker, journal, CycleContext(broker, journal, strategy, settings), lock)


def open_read_only_runtime(cfg: Config) -> Runtime:
    """The journal and the account for reading (``status``, ``health``): no lock, SQLite
    ``mode=ro``, nothing created or modified, safe beside a running daemon. Missing,
    corrupt or newer state raises ``StateError`` naming the file."""
    journal = Journal.open_read_only(cfg.state_db)
    try:
        broker, universe = build_broker(cfg, read_only=True)
    except BaseException:
        journal.close()
        raise
    try:
        settings = cycle_settings(cfg, universe)
        strategy = cfg.build_strategy()
    except BaseException:
        broker.close()
        journal.close()
        raise
    return Runtime(cfg, broker, journal, CycleContext(broker, journal, strategy, settings))
