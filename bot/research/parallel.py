"""Where a sweep's trials run: in the driver, on local worker processes, or on an
existing Dask distributed cluster. Every runner takes one batch of trials, chunk by chunk
as the driver asks them (workers start on the first chunk while the sampler proposes the
next), and returns their outcomes in the batch's order, so results never depend on where
they ran.

Each runner ships the price panel to a worker once (pool initializer / ``scatter``) and
sends trials in chunks of at least ``MIN_TASK_SECS`` of work (judged from the trials so
far): Dask's per-task overhead (~2 ms) then stays small, and backtests of a second or more
go one per task so that a slow worker on a shared host does not hold up the batch.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Protocol, TypeVar

import pandas as pd
from threadpoolctl import threadpool_limits

from bot.errors import ConfigError
from bot.research.trial import TrialOutcome, TrialTask, evaluate, quiet_worker_logs, run_trials
from strategies.heap_policy import retain_freed_heap

_worker_prices: pd.DataFrame | None = None
CONNECT_TIMEOUT_SECS = 15
CLOSE_WAIT_SECS = 10.0  # Ctrl-C during the client's close: how long the close may still take
MIN_TASK_SECS = 0.1  # FIELD-NOTES: batch Dask tasks to >= ~100 ms of work each
T = TypeVar("T")


class TrialRunner(Protocol):
    """Cuts a batch into chunks (``plan``), starts each chunk as soon as the driver has
    asked its trials (``submit``), and returns the outcomes in the batch's order
    (``gather``)."""

    workers: int

    def plan(self, n_trials: int) -> list[int]: ...

    def submit(self, tasks: list[TrialTask]) -> Any: ...

    def gather(self, handles: list[Any]) -> list[TrialOutcome]: ...

    def close(self) -> None: ...

    def abort(self) -> None:
        """Stop the trials under way now (Ctrl-C): their results are not wanted."""


def chunk_sizes(n_trials: int, workers: int, mean_trial_secs: float | None) -> list[int]:
    """The sizes of ``n_trials`` contiguous chunks of ≥ ``MIN_TASK_SECS`` of expected work,
    at most one per worker (before any trial was timed: one chunk per worker)."""
    if n_trials <= 0:
        return []
    widest = math.ceil(n_trials / max(1, workers))
    size = widest if not mean_trial_secs else min(
        widest, max(1, math.ceil(MIN_TASK_SECS / mean_trial_secs)))
    return [min(size, n_trials - i) for i in range(0, n_trials, size)]


def chunks(tasks: Sequence[TrialTask], workers: int, mean_trial_secs: float | None
           ) -> list[list[TrialTask]]:
    """``tasks`` cut by ``chunk_sizes``, in order."""
    out, start = [], 0
    for size in chunk_sizes(len(tasks), workers, mean_trial_secs):
        out.append(list(tasks[start:start + size]))
        start += size
    return out


class _TrialClock:
    """Running mean of the trials' backtest seconds (sizes the next chunks)."""

    def __init__(self) -> None:
        self.secs, self.count = 0.0, 0

    def add(self, outcomes: list[TrialOutcome]) -> list[TrialOutcome]:
        self.secs += sum(o.backtest_secs for o in outcomes)
        self.count += len(outcomes)
        return outcomes

    @property
    def mean(self) -> float | None:
        return self.secs / self.count if self.count else None


class InlineRunner:
    """Trials in the driver process (``--jobs 1``): a chunk runs when gathered."""

    workers = 1

    def __init__(self, prices: pd.DataFrame) -> None:
        self._prices = prices

    def plan(self, n_trials: int) -> list[int]:
        return chunk_sizes(n_trials, 1, None)

    def submit(self, tasks: list[TrialTask]) -> list[TrialTask]:
        return tasks

    def gather(self, handles: list[list[TrialTask]]) -> list[TrialOutcome]:
        with threadpool_limits(limits=1):
            return [evaluate(self._prices, task) for chunk in handles for task in chunk]

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _init_worker(prices: pd.DataFrame, parent: int) -> None:
    global _worker_prices
    _worker_prices = prices
    # Ctrl-C reaches the whole process group: only the sweep acts on it (its journal holds
    # every finished trial; ``ProcessRunner.abort`` stops the workers). A worker that took
    # it printed a KeyboardInterrupt traceback, or broke the pool under the sweep's feet.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threadpool_limits(limits=1)
    retain_freed_heap()  # as the CLI's process does (strategies/heap_policy.py)
    quiet_worker_logs()
    _exit_with_parent(parent)  # (the sweep's pid: it may be gone before this runs)


PARENT_POLL_SECS = 1.0


def _exit_with_parent(parent: int) -> None:
    """End this worker when the sweep that spawned it dies (SIGKILL gives the pool no
    chance to stop its workers: they idled on, reparented, for good)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_SECS)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_in_worker(tasks: list[TrialTask]) -> list[TrialOutcome]:
    assert _worker_prices is not None, "worker started without the price panel"
    return run_trials(_worker_prices, tasks)


@contextlib.contextmanager
def _sigint_ignored_by_children() -> Iterator[None]:
    """Processes spawned inside ignore Ctrl-C from their first instruction (an ignored
    signal stays ignored across exec, and Python then installs no KeyboardInterrupt
    handler): one that took it while still importing printed a traceback. The caller's
    own handler is back on exit; off the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _worker_ready() -> bool:
    return _worker_prices is not None


class ProcessRunner:
    """``--jobs N`` local worker processes (spawned: the driver may run a progress thread,
    and forking a threaded process can deadlock), started here so that their start-up
    (imports, the panel) is not charged to the first batch."""

    def __init__(self, prices: pd.DataFrame, workers: int) -> None:
        self.workers = workers
        self._clock = _TrialClock()
        self._others = set(multiprocessing.active_children())  # not the pool's: kept alive
        self._pool = ProcessPoolExecutor(max_workers=workers,
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_worker, initargs=(prices, os.getpid()))
        with _sigint_ignored_by_children():  # (the submits spawn the workers)
            started = [self._pool.submit(_worker_ready) for _ in range(workers)]
        for ready in started:
            ready.result()

    def plan(self, n_trials: int) -> list[int]:
        return chunk_sizes(n_trials, self.workers, self._clock.mean)

    def submit(self, tasks: list[TrialTask]) -> Future[list[TrialOutcome]]:
        return self._pool.submit(_run_in_worker, tasks)

    def gather(self, handles: list[Future[list[TrialOutcome]]]) -> list[TrialOutcome]:
        return self._clock.add([outcome for f in handles for outcome in f.result()])

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """End the worker processes (SIGTERM) instead of waiting out their trials: the
        children that appeared since the pool was made (the pool spawns on demand)."""
        for worker in set(multiprocessing.active_children()) - self._others:
            worker.terminate()


def _waited_for_here(call: Callable[[], T], finish_secs: float = 0.0) -> T:
    """``call()``, a blocking Dask client call, run on a helper thread while the main thread
    waits for it. Ctrl-C's KeyboardInterrupt is raised in the main thread only: it ends this
    wait, never distributed's own (``distributed.utils.sync``). Interrupted, that one asks
    the client's event loop to cancel the call, and when the loop had not started the call
    yet (busy for a moment) the cancel failed: tornado printed "ERROR - Exception in
    callback ... NameError: ... 'future'" and a traceback after allocbot's own message.
    The call left running is ended by closing the client (``DaskRunner.close``).
    ``finish_secs``: after Ctrl-C, how long the call may still take before the interrupt
    goes on (a close: the client is closed before the sweep exits). Off the main thread
    (no Ctrl-C there) the call just runs."""
    if threading.current_thread() is not threading.main_thread():
        return call()
    done = threading.Event()
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # noqa: BLE001 (re-raised in the main thread)
            outcome.append((False, exc))
        finally:
            done.set()

    try:
        threading.Thread(target=run, name="dask-client-call", daemon=True).start()
        done.wait()
    except KeyboardInterrupt:
        done.wait(finish_secs)
        raise
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


class DaskRunner:
    """Trials on an existing ``distributed`` cluster: the panel scattered once to every
    worker, one chunk per worker and batch, ``pure=False`` (never a cached result).
    Every blocking call to the cluster is waited for by ``_waited_for_here``: Ctrl-C
    interrupts the sweep's wait, and the client is then closed in order."""

    def __init__(self, prices: pd.DataFrame, address: Any) -> None:
        from distributed import Client

        self._own = not isinstance(address, Client)
        self._client: Any = None if self._own else address
        self._clock = _TrialClock()
        try:
            self.workers, self._prices = _waited_for_here(lambda: self._start(prices, address))
        except KeyboardInterrupt:  # while connecting or scattering: the client made so far
            self.close()
            raise

    def _start(self, prices: pd.DataFrame, address: Any) -> tuple[int, Any]:
        """(worker threads, the scattered panel); the client, when the runner makes it."""
        if self._own:
            from distributed import Client

            try:
                self._client = Client(address, timeout=CONNECT_TIMEOUT_SECS)
            except (OSError, ValueError, TimeoutError) as exc:
                raise ConfigError(f"--dask {address!r}: cannot connect to the Dask scheduler: "
                                  f"{exc}") from None
        workers = max(1, sum(self._client.nthreads().values()))
        return workers, self._client.scatter(prices, broadcast=True)

    def plan(self, n_trials: int) -> list[int]:
        return chunk_sizes(n_trials, self.workers, self._clock.mean)

    def submit(self, tasks: list[TrialTask]) -> Any:
        return self._client.submit(run_trials, self._prices, tasks, pure=False)

    def gather(self, handles: list[Any]) -> list[TrialOutcome]:
        batches = _waited_for_here(lambda: self._client.gather(handles))
        return self._clock.add([o for batch in batches for o in batch])

    def close(self) -> None:
        client = self._client
        if self._own and client is not None:
            _waited_for_here(client.close, finish_secs=CLOSE_WAIT_SECS)

    def abort(self) -> None:
        pass  # the cluster's workers are not ours; closing the client drops our tasks
