"""The Optuna side of a sweep: the journal-backed study, per-batch samplers, asking a
batch of trials and telling their outcomes. Optuna is imported lazily (research extra).

Reproducibility (FIELD-NOTES, Optuna 5): trials are asked in fixed batches of slots and
each batch gets a fresh sampler seeded from (study seed, batch number), so the trials do
not depend on the number of workers, and survive a resume (the sampler's RNG state is not
stored). A trial's ``slot`` (0..N−1, its place in the sweep) is a user attribute; trials
left RUNNING by a crash are marked FAIL on resume and their slots re-run with the same
params (enqueued). Non-finite objectives are told as FAIL explicitly.

The journal is a ``BatchJournal`` (one write + fsync per batch, ``flush_journal``): a kill
loses only the batch that was running, which is asked again from its seed on resume.
"""

from __future__ import annotations

import itertools
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import ConfigError
from bot.research.space import Choice, FloatRange, IntRange, Param, SweepSpace
from bot.research.trial import TrialOutcome

if TYPE_CHECKING:
    import optuna

    from bot.research.batch_journal import BatchJournal

STUDY_NAME = "allocbot-sweep"
JOURNAL_FILE = "study.journal"
RESULT_ATTR = "result"  # set on every trial that finished (ok, infeasible or failed)
SEED_STRIDE = 100003
_JOURNALS: weakref.WeakKeyDictionary[Any, BatchJournal] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class FinishedTrial:
    number: int
    slot: int
    params: dict[str, Any]  # Optuna's values (choice labels)
    value: float | None
    outcome: str  # complete | infeasible | failed
    result: dict[str, Any]


def batch_seed(seed: int, batch_no: int) -> int:
    """The sampler seed of batch ``batch_no``: a function of the study seed alone."""
    return (seed * SEED_STRIDE + batch_no) % 2**32


def open_study(out_dir: Path, direction: str, settings: dict[str, Any],
               resume: bool) -> optuna.Study:
    """Create the study in ``out_dir``'s journal, or load it on ``resume`` after checking
    it was made with the same settings. The journal is a ``BatchJournal``: the caller
    flushes it once per batch (``flush_journal``) and closes it (``close_journal``)."""
    import optuna
    from optuna.storages import JournalStorage

    from bot.research.batch_journal import BatchJournal

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal = out_dir / JOURNAL_FILE
    if journal.exists() and not resume:
        raise ConfigError(f"--out {out_dir}: a sweep is already there ({journal.name}); pass "
                          "--resume to continue it or choose another --out")
    if resume and not journal.exists():
        raise ConfigError(f"--resume: no sweep to resume in {out_dir} ({journal.name} missing)")
    out_dir.mkdir(parents=True, exist_ok=True)
    backend = BatchJournal(journal)
    try:
        study = optuna.create_study(study_name=STUDY_NAME, storage=JournalStorage(backend),
                                    direction=direction,  # type: ignore[arg-type]
                                    load_if_exists=resume)
        stored = study.user_attrs.get("settings")
        if stored is None:
            study.set_user_attr("settings", settings)
        else:
            # (a key an older allocbot did not store is not compared)
            changed = sorted(k for k in settings if k in stored and stored[k] != settings[k])
            if changed:
                raise ConfigError(f"--resume: the sweep in {out_dir} was started with "
                                  f"different {', '.join(changed)}; resume with the same inputs")
        backend.flush()
    except BaseException:
        backend.close()
        raise
    _JOURNALS[study] = backend
    return study


def _journal(study: optuna.Study) -> BatchJournal:
    journal = _JOURNALS.get(study)
    if journal is None:
        raise TypeError("the study was not opened by open_study")  # a bug, not input
    return journal


def flush_journal(study: optuna.Study) -> None:
    """Make everything told so far durable (one write + fsync): call after each batch."""
    _journal(study).flush()


def close_journal(study: optuna.Study) -> None:
    """Release the journal file (unflushed entries are dropped, as a kill would); the
    study stays readable in memory."""
    _journal(study).close()


def abandon_stale(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """Mark trials a crash left RUNNING (or WAITING) as FAIL; return slot → the params they
    had stored (possibly fewer than the space's, if the kill landed mid-ask)."""
    from optuna.trial import TrialState

    redo: dict[int, dict[str, Any]] = {}
    for _ in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        study.tell(study.ask().number, state=TrialState.FAIL)  # pops the waiting trial
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)
        if "slot" in t.user_attrs:
            redo[int(t.user_attrs["slot"])] = dict(t.params)
    return redo


def finished_trials(study: optuna.Study) -> list[FinishedTrial]:
    """Trials that ran to an outcome, by slot (abandoned ones have no result)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        result = t.user_attrs.get(RESULT_ATTR)
        if result is None:
            continue
        value = t.values[0] if t.values else None
        rows.append(FinishedTrial(t.number, int(t.user_attrs["slot"]), dict(t.params), value,
                                  result["outcome"], result))
    return sorted(rows, key=lambda r: r.slot)


def _sampler(kind: str, seed: int, batch_no: int) -> optuna.samplers.BaseSampler:
    import optuna

    s = batch_seed(seed, batch_no)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=s, constant_liar=True)
    return optuna.samplers.RandomSampler(seed=s)  # grid: every param is enqueued


def _suggest(trial: optuna.Trial, param: Param) -> Any:
    d = param.domain
    if isinstance(d, IntRange):
        return trial.suggest_int(param.path, d.low, d.high, step=d.step, log=d.log)
    if isinstance(d, FloatRange):
        return trial.suggest_float(param.path, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_categorical(param.path, list(d.labels))


def grid_points(space: SweepSpace) -> list[dict[str, Any]]:
    """Every combination (``itertools.product``) in a fixed order; float ranges need a step."""
    axes = []
    for p in space.params:
        d = p.domain
        if isinstance(d, Choice):
            axes.append(list(d.labels))
        elif isinstance(d, IntRange):
            axes.append(list(range(d.low, d.high + 1, d.step)))
        elif d.step is None:
            raise ConfigError(f"[space].{p.path}: --sampler grid needs a step on float ranges")
        else:
            n = round((d.high - d.low) / d.step)
            axes.append([d.low + i * d.step for i in range(n + 1)])
    return [dict(zip([p.path for p in space.params], combo, strict=True))
            for combo in itertools.product(*axes)]


def start_batch(study: optuna.Study, batch_no: int, seed: int, sampler: str) -> None:
    """Give the study batch ``batch_no``'s fresh sampler (seeded from the study seed)."""
    study.sampler = _sampler(sampler, seed, batch_no)


def ask_slots(study: optuna.Study, space: SweepSpace, slots: list[int],
              fixed: dict[int, dict[str, Any]]) -> list[tuple[optuna.Trial, dict[str, Any]]]:
    """Ask one trial per slot (enqueued params where ``fixed`` has them); (trial, labels).
    A batch may be asked in several calls: the sampler carries on where it stopped."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # optuna: "fixed param out of range"
        asked = []
        for slot in slots:
            if slot in fixed:
                study.enqueue_trial(fixed[slot], user_attrs={"slot": slot})
                trial = study.ask()
            else:
                trial = study.ask()
                trial.set_user_attr("slot", slot)
            asked.append((trial, {p.path: _suggest(trial, p) for p in space.params}))
    return asked


def ask_batch(study: optuna.Study, space: SweepSpace, slots: list[int], batch_no: int,
              seed: int, sampler: str, fixed: dict[int, dict[str, Any]]
              ) -> list[tuple[optuna.Trial, dict[str, Any]]]:
    """A whole batch at once: ``start_batch`` then ``ask_slots``."""
    start_batch(study, batch_no, seed, sampler)
    return ask_slots(study, space, slots, fixed)


def tell_outcome(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome,
                 space: SweepSpace) -> None:
    """Store the outcome (one user attribute), the constraints, then tell the state."""
    from optuna.trial import TrialState

    obj = space.objective
    if outcome.metrics is None:
        trial.set_user_attr(RESULT_ATTR, {"outcome": "failed", "error": outcome.error,
                                          "duration_secs": outcome.backtest_secs})
        study.tell(trial, state=TrialState.FAIL)
        return
    value = outcome.metrics.get(obj.metric)
    feasible = all(c.holds(outcome.metrics) for c in obj.constraints)
    result: dict[str, Any] = {"outcome": "complete" if feasible else "infeasible",
                              "metrics": outcome.metrics,
              "duration_secs": outcome.backtest_secs, "error": None}
    if value is None:
        result |= {"outcome": "failed", "error": f"objective {obj.metric} is not finite"}
    trial.set_user_attr(RESULT_ATTR, result)
    for c in obj.constraints:
        m = outcome.metrics.get(c.metric)
        violation = 1.0 if m is None else (m - c.bound if c.op in ("<=", "<") else c.bound - m)
        if not c.holds(outcome.metrics):
            violation = max(violation, 1e-12)
        trial.set_constraint(str(c), float(violation))
    if value is None:
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, float(value))
