"""Where a sweep's trials run: in the driver, on local worker processes, or on an
existing Dask distributed cluster. Every runner takes one batch of trials and returns
their outcomes in the batch's order, so results never depend on where they ran.

Each runner ships the price panel to a worker once (pool initializer / ``scatter``) and
sends trials in chunks, one chunk per worker and batch: Dask's per-task overhead (~2 ms)
then stays small next to backtests of 100 ms and more (FIELD-NOTES, Dask).
"""

from __future__ import annotations

import math
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol

import pandas as pd
from threadpoolctl import threadpool_limits

from bot.research.trial import TrialOutcome, TrialTask, evaluate, quiet_worker_logs, run_trials

_worker_prices: pd.DataFrame | None = None


class TrialRunner(Protocol):
    workers: int

    def run(self, tasks: list[TrialTask]) -> list[TrialOutcome]: ...

    def close(self) -> None: ...


def chunks(tasks: Sequence[TrialTask], n_chunks: int) -> list[list[TrialTask]]:
    """``tasks`` cut into at most ``n_chunks`` contiguous chunks of near-equal size."""
    if not tasks:
        return []
    size = math.ceil(len(tasks) / max(1, n_chunks))
    return [list(tasks[i:i + size]) for i in range(0, len(tasks), size)]


class InlineRunner:
    """Trials in the driver process (``--jobs 1``)."""

    workers = 1

    def __init__(self, prices: pd.DataFrame) -> None:
        self._prices = prices

    def run(self, tasks: list[TrialTask]) -> list[TrialOutcome]:
        with threadpool_limits(limits=1):
            return [evaluate(self._prices, task) for task in tasks]

    def close(self) -> None:
        pass


def _init_worker(prices: pd.DataFrame) -> None:
    global _worker_prices
    _worker_prices = prices
    threadpool_limits(limits=1)
    quiet_worker_logs()


def _run_in_worker(tasks: list[TrialTask]) -> list[TrialOutcome]:
    assert _worker_prices is not None, "worker started without the price panel"
    return run_trials(_worker_prices, tasks)


class ProcessRunner:
    """``--jobs N`` local worker processes (spawned: the driver may run a progress thread,
    and forking a threaded process can deadlock)."""

    def __init__(self, prices: pd.DataFrame, workers: int) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers,
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_worker, initargs=(prices,))

    def run(self, tasks: list[TrialTask]) -> list[TrialOutcome]:
        futures = [self._pool.submit(_run_in_worker, chunk)
                   for chunk in chunks(tasks, self.workers)]
        return [outcome for f in futures for outcome in f.result()]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class DaskRunner:
    """Trials on an existing ``distributed`` cluster: the panel scattered once to every
    worker, one chunk per worker and batch, ``pure=False`` (never a cached result)."""

    def __init__(self, prices: pd.DataFrame, address: Any) -> None:
        from distributed import Client

        self._own = not isinstance(address, Client)
        self._client = Client(address) if self._own else address
        self.workers = max(1, sum(self._client.nthreads().values()))
        self._prices = self._client.scatter(prices, broadcast=True)

    def run(self, tasks: list[TrialTask]) -> list[TrialOutcome]:
        futures = [self._client.submit(run_trials, self._prices, chunk, pure=False)
                   for chunk in chunks(tasks, self.workers)]
        return [outcome for batch in self._client.gather(futures) for outcome in batch]

    def close(self) -> None:
        if self._own:
            self._client.close()
