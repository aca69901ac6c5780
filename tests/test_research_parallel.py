"""Task chunking: order kept, at most one chunk per worker, long trials one per task."""

from __future__ import annotations

from pathlib import Path

from bot.research.parallel import chunks
from bot.research.trial import TrialTask


def _tasks(n: int) -> list[TrialTask]:
    return [TrialTask(i, i, {}, Path(".")) for i in range(n)]


def test_chunks_before_timing_one_per_worker_in_order():
    parts = chunks(_tasks(8), workers=2, mean_trial_secs=None)
    assert [[t.slot for t in p] for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_chunks_long_trials_go_one_per_task():
    parts = chunks(_tasks(8), workers=2, mean_trial_secs=1.5)
    assert [len(p) for p in parts] == [1] * 8


def test_chunks_short_trials_grouped_to_100ms_but_not_past_one_per_worker():
    assert [len(p) for p in chunks(_tasks(8), workers=2, mean_trial_secs=0.03)] == [4, 4]
    assert [len(p) for p in chunks(_tasks(8), workers=1, mean_trial_secs=0.03)] == [4, 4]
