"""The sweep's journal backend: nothing on disk before a flush, the same file Optuna's own
backend reads, damage in the middle refused rather than silently cut."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from bot.errors import StateError
from bot.research.batch_journal import BatchJournal


def _study(path: Path) -> tuple[optuna.Study, BatchJournal]:
    journal = BatchJournal(path)
    study = optuna.create_study(study_name="s", storage=JournalStorage(journal),
                                load_if_exists=True)
    return study, journal


def _ask_and_tell(study: optuna.Study, n: int) -> None:
    for _ in range(n):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        trial.set_user_attr("slot", trial.number)
        study.tell(trial, x)


def test_batch_journal_appends_reach_the_file_only_on_flush(tmp_path):
    path = tmp_path / "study.journal"
    study, journal = _study(path)
    journal.flush()
    created = path.stat().st_size
    _ask_and_tell(study, 3)
    assert path.stat().st_size == created and journal.pending > 0
    journal.flush()
    assert path.stat().st_size > created and journal.pending == 0
    journal.close()


def test_batch_journal_file_reads_back_the_same_trials_in_optuna_and_here(tmp_path):
    path = tmp_path / "study.journal"
    study, journal = _study(path)
    _ask_and_tell(study, 4)
    journal.flush()
    journal.close()
    theirs = optuna.load_study(study_name="s", storage=JournalStorage(
        JournalFileBackend(str(path)))).get_trials()
    ours, again = _study(path)
    assert [(t.params, t.values, t.user_attrs) for t in ours.get_trials()] == \
        [(t.params, t.values, t.user_attrs) for t in theirs]
    assert len(theirs) == 4
    again.close()


def test_batch_journal_close_drops_what_was_not_flushed(tmp_path):
    path = tmp_path / "study.journal"
    study, journal = _study(path)
    _ask_and_tell(study, 2)
    journal.flush()
    _ask_and_tell(study, 3)
    journal.close()  # as a kill would
    reopened, again = _study(path)
    assert len(reopened.get_trials()) == 2
    again.close()


def test_batch_journal_garbled_line_before_good_ones_raises_naming_the_file(tmp_path):
    path = tmp_path / "study.journal"
    study, journal = _study(path)
    _ask_and_tell(study, 2)
    journal.flush()
    journal.close()
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:2], b"{not json\n", *lines[2:]]))
    with pytest.raises(StateError, match=r"study\.journal: line 3 is not a journal entry"):
        BatchJournal(path)
    assert b"{not json" in path.read_bytes()  # left as found
