"""What a sweep leaves behind besides the journal: ``trials.csv``, ``best.toml``, the
best config's in-sample and holdout backtests (the single-backtest outputs of
``bot.backtest.report``), the overfitting statistics and ``sweep.json``."""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import structlog

from bot.backtest.metrics import daily_risk_free, sharpe, skew_kurtosis
from bot.backtest.report import write_outputs
from bot.backtest.setup import BacktestRun, run_configured
from bot.backtest.walk_forward import WalkForward
from bot.config import parse_config
from bot.research.overfitting import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probability_of_backtest_overfitting,
)
from bot.research.space import apply_params
from bot.research.study import FinishedTrial
from bot.research.sweep import RETURNS_DIR, SweepInputs, trial_values
from bot.research.trial import json_number
from strategies.estimators import ANNUALIZATION_DAYS

log = structlog.get_logger("allocbot.research")
PBO_BLOCKS = 16
IDENTICAL_TRIALS_NOTE = "every trial returned exactly the same: there is no selection to test"
DSR_LUCK_THRESHOLD = 0.95  # below: the winner's Sharpe is plausibly the best of N lucky draws
PBO_LUCK_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class SweepSummary:
    best: FinishedTrial | None
    best_raw: dict[str, Any] | None
    in_sample: BacktestRun | None
    holdout: BacktestRun | None
    overfitting: dict[str, Any]
    rows: list[FinishedTrial]
    # the in-sample or holdout window is short (``sweep.SweepInputs.window_warnings``)
    window_warnings: tuple[str, ...] = ()


def best_trial(rows: list[FinishedTrial], direction: str) -> FinishedTrial | None:
    """The best feasible trial; ties go to the lower slot (deterministic)."""
    ok = [r for r in rows if r.outcome == "complete" and r.value is not None]
    if not ok:
        return None
    sign = -1.0 if direction == "maximize" else 1.0
    return min(ok, key=lambda r: (sign * float(r.value or 0.0), r.slot))


def trials_frame(rows: list[FinishedTrial]) -> pd.DataFrame:
    """One row per finished trial: slot, Optuna number, state, value, params, metrics,
    backtest duration, error."""
    records = []
    for r in rows:
        metrics = r.result.get("metrics") or {}
        rec: dict[str, Any] = {"trial": r.slot, "number": r.number, "state": r.outcome,
                               "value": r.value}
        rec |= {f"param:{k}": v for k, v in r.params.items()}
        rec |= {k: v for k, v in metrics.items() if not isinstance(v, dict | list)}
        rec |= {"duration_secs": r.result.get("duration_secs"), "error": r.result.get("error")}
        records.append(rec)
    return pd.DataFrame.from_records(records)


def _toml_ready(raw: dict[str, Any]) -> dict[str, Any]:
    """Paths as strings, Nones dropped: what tomli-w can write and tomllib reads back."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        if isinstance(value, dict):
            out[key] = _toml_ready(value)
        elif isinstance(value, Path):
            out[key] = str(value)
        else:
            out[key] = value
    return out


def write_best_toml(path: Path, raw: dict[str, Any], base_dir: Path,
                    walk_forward: WalkForward | None = None) -> dict[str, Any]:
    """A complete config ``allocbot backtest``/``run`` accept as is: the sweep's config with
    the best params, prices as an absolute path, a fresh state dir beside the file."""
    import tomli_w

    cfg = parse_config(raw, base_dir)
    doc = _toml_ready(apply_params(raw, {"sim.prices": str(cfg.sim.prices),
                                         "bot.state_dir": "state"}))
    flag = "" if walk_forward is None else (
        f" --walk-forward {walk_forward.train_days}:{walk_forward.test_days}")
    text = ("# allocbot sweep: the best trial's complete config. `allocbot backtest --config "
            f"this-file{flag}`\n# reproduces its in-sample metrics; drop [backtest] start/end "
            "to backtest the whole history.\n" + tomli_w.dumps(doc))
    if tomllib.loads(text) != doc:
        raise RuntimeError("best.toml does not read back as written")  # a bug, not input
    path.write_text(text, encoding="utf-8")
    return doc


def returns_matrix(out_dir: Path, rows: list[FinishedTrial]) -> tuple[np.ndarray, list[int]]:
    """T × N daily returns of the complete trials (same dates: one window for all)."""
    series, slots = [], []
    for r in rows:
        f = out_dir / RETURNS_DIR / f"slot_{r.slot:06d}.npy"
        if r.result.get("metrics") and f.exists():
            series.append(np.load(f))
            slots.append(r.slot)
    if not series:
        return np.empty((0, 0)), []
    n = min(len(s) for s in series)
    return np.column_stack([s[len(s) - n:] for s in series]), slots


def daily_sharpe_ratios(matrix: np.ndarray, risk_free_rate: float) -> np.ndarray:
    """Per column (trial): the Sharpe ratio the sweep reports (``metrics.sharpe``: excess
    returns r − rf_d, rf_d from ``[backtest].risk_free_rate`` compounded daily), per day
    (÷ √252, as the papers use); NaN where it is undefined (zero volatility)."""
    out = np.full(matrix.shape[1], np.nan)
    for j in range(matrix.shape[1]):
        annual = sharpe(matrix[:, j], risk_free_rate)
        if annual is not None:
            out[j] = annual / math.sqrt(ANNUALIZATION_DAYS)
    return out


def overfitting_stats(out_dir: Path, rows: list[FinishedTrial], best: FinishedTrial | None,
                      risk_free_rate: float = 0.0) -> dict[str, Any]:
    """The Deflated Sharpe Ratio of the best trial and the PBO of the sweep.

    DSR (Bailey, D. H. & López de Prado, M. (2014), "The Deflated Sharpe Ratio: Correcting
    for Selection Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio
    Management 40(5), 94–107, eqs. 2 and the appendix): DSR = Φ((SR − SR₀)·√(T − 1) /
    √(1 − γ₃·SR + (γ₄ − 1)/4·SR²)) with SR₀ = √V·((1 − γ)Φ⁻¹(1 − 1/N) + γΦ⁻¹(1 − 1/(N·e))),
    γ Euler–Mascheroni. SR is the best trial's daily Sharpe ratio of its excess returns
    r − rf_d at ``risk_free_rate`` (the config's ``[backtest].risk_free_rate``: the Sharpe
    the sweep reports and optimizes, ÷ √252), T its daily returns, γ₃/γ₄ their skewness and
    (plain) kurtosis, N the trials with returns, V the variance (ddof 1) of their daily
    Sharpe ratios, trials whose Sharpe is undefined (zero volatility) left out of V. An
    undefined input (the best's Sharpe, V from fewer than 2 Sharpe ratios, PSR's
    denominator ≤ 0) makes the DSR None, with the reason in ``dsr_note``.

    PBO by CSCV (S = 16; Bailey, Borwein, López de Prado & Zhu 2017) over the same excess
    returns."""
    matrix, slots = returns_matrix(out_dir, rows)
    stats: dict[str, Any] = {"n_trials": len(slots), "risk_free_rate": risk_free_rate}
    if best is None or best.slot not in slots or len(slots) < 2:
        return stats | {"note": "needs at least two trials with returns and a best trial"}
    if matrix.shape[0] and bool((np.ptp(matrix, axis=1) == 0.0).all()):
        # no winner to judge: say so, not "luck", and no DSR or PBO a script could read
        # as a verdict
        return stats | {
            "identical_trials": True, "deflated_sharpe_ratio": None, "pbo": None,
            "dsr_note": IDENTICAL_TRIALS_NOTE, "pbo_note": IDENTICAL_TRIALS_NOTE,
            "verdict": "Every trial returned exactly the same: the swept keys changed nothing "
                       "here (a drift band under a rebalancing calendar, a window longer than "
                       "the data, a parameter the strategy ignores); there is no winner to "
                       "judge."}
    excess = matrix - daily_risk_free(risk_free_rate)
    daily = daily_sharpe_ratios(matrix, risk_free_rate)
    col = slots.index(best.slot)
    r = excess[:, col]
    defined = daily[np.isfinite(daily)]
    sr = float(daily[col]) if math.isfinite(daily[col]) else None
    var = float(np.var(defined, ddof=1)) if len(defined) >= 2 else None
    g3 = g4 = None
    if sr is not None:  # a defined Sharpe: the returns vary, so their moments exist
        g3, excess_kurtosis = skew_kurtosis(r)
        g4 = excess_kurtosis + 3.0  # the PSR takes the plain kurtosis
    emax = None if var is None else expected_max_sharpe(len(slots), var)
    dsr, why = None, None
    if sr is None:
        why = "the best trial's Sharpe ratio is undefined (its returns have zero volatility)"
    elif var is None:
        why = "fewer than two trials have a defined Sharpe ratio"
    else:
        value = deflated_sharpe_ratio(sr, len(r), len(slots), var, g3 or 0.0, g4 or 0.0)
        if math.isfinite(value):
            dsr = value
        else:
            why = "the PSR's denominator 1 − γ₃·SR + (γ₄ − 1)/4·SR² is not positive"
    stats |= {"best_daily_sharpe": sr, "sharpe_variance_daily": var, "skewness": g3,
              "kurtosis": g4, "n_obs": len(r), "expected_max_sharpe_daily": emax,
              "expected_max_sharpe_annual":
                  None if emax is None else emax * math.sqrt(ANNUALIZATION_DAYS),
              "deflated_sharpe_ratio": dsr}
    if why is not None:
        stats["dsr_note"] = why
    try:
        pbo = probability_of_backtest_overfitting(excess, PBO_BLOCKS)
        stats |= {"pbo": pbo.pbo, "pbo_blocks": pbo.n_blocks,
                  "pbo_combinations": pbo.n_combinations, "pbo_logits": pbo.logits.tolist()}
    except ValueError as exc:
        stats["pbo_note"] = str(exc)
    stats["verdict"] = luck_verdict(stats)
    return stats


def luck_verdict(stats: dict[str, Any]) -> str:
    """One plain sentence on whether the winner is likely luck (an undefined DSR is said to
    be undefined, with its reason, never printed as nan)."""
    dsr, pbo = stats.get("deflated_sharpe_ratio"), stats.get("pbo")
    if dsr is not None and not math.isfinite(dsr):
        dsr = None
    lucky_dsr = dsr is not None and dsr < DSR_LUCK_THRESHOLD
    lucky_pbo = pbo is not None and pbo >= PBO_LUCK_THRESHOLD
    undefined = ("its deflated Sharpe ratio is undefined ("
                 + stats.get("dsr_note", "not computed") + ")")
    if lucky_dsr or lucky_pbo:
        why = []
        if lucky_dsr:
            why.append(f"its deflated Sharpe ratio is {dsr:.2f} (< {DSR_LUCK_THRESHOLD})")
        if lucky_pbo:
            why.append(f"the probability of backtest overfitting is {pbo:.0%}")
        if dsr is None:
            why.append(undefined)
        return ("The winner is likely luck: " + " and ".join(why) + ". Do not trust its "
                "in-sample Sharpe; check the holdout and prefer a simpler config.")
    if dsr is None:
        return ("Whether the winner is luck cannot be told from its Sharpe ratio: "
                + undefined + (f"; PBO is {pbo:.0%}." if pbo is not None else ".")
                + " Check the holdout.")
    return ("The winner does not look like luck: its Sharpe survives deflation for the "
            f"{stats['n_trials']} trials tried" + (f" and PBO is {pbo:.0%}." if pbo is not None
                                                   else "."))


def run_best(inputs: SweepInputs, best_raw: dict[str, Any], holdout: bool,
             walk_forward: WalkForward | None = None
             ) -> tuple[BacktestRun, BacktestRun | None]:
    """The best config in sample (with its benchmark) and, with --holdout, on the days
    after the holdout date only (history before it serves as the warm-up)."""
    cfg = parse_config(best_raw, inputs.base_dir)
    in_sample = run_configured(cfg, inputs.prices_in_sample, inputs.universe,
                               walk_forward=walk_forward)
    if not holdout:
        return in_sample, None
    after = inputs.prices_all.index[len(inputs.prices_in_sample)].date()
    oos_raw = apply_params(best_raw, {"backtest.start": after})
    oos_raw["backtest"].pop("end", None)
    oos_cfg = parse_config(oos_raw, inputs.base_dir)
    return in_sample, run_configured(oos_cfg, inputs.prices_all, inputs.universe,
                                     walk_forward=walk_forward)


def finish_sweep(out_dir: Path, inputs: SweepInputs, rows: list[FinishedTrial],
                 holdout: bool, walk_forward: WalkForward | None = None) -> SweepSummary:
    """Write trials.csv, best.toml, best/ and holdout/ backtests, sweep.json."""
    direction = inputs.space.objective.direction
    trials_frame(rows).to_csv(out_dir / "trials.csv", index=False)
    best = best_trial(rows, direction)
    if best is None:
        summary = SweepSummary(None, None, None, None, {}, rows, inputs.window_warnings)
        _write_json(out_dir, inputs, summary)
        return summary
    best_raw = apply_params(inputs.base_raw, trial_values(inputs.space, best.params))
    write_best_toml(out_dir / "best.toml", best_raw, inputs.base_dir, walk_forward)
    in_sample, oos = run_best(inputs, best_raw, holdout, walk_forward)
    tearsheet = inputs.base_cfg.backtest.tearsheet
    write_outputs(out_dir / "best", in_sample.result, in_sample.benchmark, in_sample.metrics,
                  tearsheet)
    if oos is not None:
        write_outputs(out_dir / "holdout", oos.result, oos.benchmark, oos.metrics, tearsheet)
    stats = overfitting_stats(out_dir, rows, best, inputs.base_cfg.backtest.risk_free_rate)
    summary = SweepSummary(best, best_raw, in_sample, oos, stats, rows,
                           inputs.window_warnings)
    _write_json(out_dir, inputs, summary)
    return summary


def _plain(value: Any) -> Any:
    """JSON-ready: NaN/inf → null, numpy scalars → Python, paths and dates → strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    value = json_number(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _write_json(out_dir: Path, inputs: SweepInputs, s: SweepSummary) -> None:
    obj = inputs.space.objective
    doc = {"objective": {"metric": obj.metric, "direction": obj.direction,
                         "constraints": [str(c) for c in obj.constraints]},
           "settings": inputs.settings, "trials": len(s.rows),
           "states": pd.Series([r.outcome for r in s.rows]).value_counts().to_dict(),
           "best": None if s.best is None else {
               "trial": s.best.slot, "value": s.best.value, "params": s.best.params,
               "metrics": s.best.result.get("metrics")},
           "holdout": None if s.holdout is None else s.holdout.metrics["strategy"],
           "window_warnings": list(s.window_warnings),
           "overfitting": {k: v for k, v in s.overfitting.items() if k != "pbo_logits"}}
    text = json.dumps(_plain(doc), indent=2)
    (out_dir / "sweep.json").write_text(text + "\n", encoding="utf-8")
