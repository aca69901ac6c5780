"""Versioned SQLite state files that refuse to be misread.

Used by the journal (``bot/engine/journal.py``) and the simulator's ledger
(``brokers/sim/ledger.py``), which share one file. Each component's schema has a version
and an ordered list of migrations (migration *i* takes version *i* to *i + 1*; migration
0 is the original DDL). Opening:

* a new/empty file creates the latest schema;
* a file with no version but the component's original tables (written before versions
  existed) is stamped version 1 and migrated;
* a newer version, tables nobody here knows, or a layout that differs from version 1
  is refused;
* a corrupt, truncated, unreadable or unwritable file raises ``StateError`` naming the
  file, what is wrong and what to do; SQLite's own exceptions never escape.

Files are created 0600 and missing directories 0700 (state holds the account's history).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

from strategies.errors import StateError

FIX_HINT = ("restore the file from a backup ('allocbot state backup' makes one) or point "
            "[bot].state_dir at a new directory")


@dataclass(frozen=True, slots=True)
class Schema:
    """One component's tables in a shared SQLite file.

    ``version_table`` None keeps the version in ``PRAGMA user_version`` (the file's
    owner); otherwise in a one-row table of that name (a guest sharing the file).
    """

    component: str  # "journal", "sim account": named in messages
    migrations: tuple[str, ...]  # DDL scripts; len() is the latest version
    owned: frozenset[str]  # the component's tables at version 1
    tolerated_prefixes: tuple[str, ...] = ()  # other components' tables in the same file
    tolerated: frozenset[str] = frozenset()
    version_table: str | None = None

    @property
    def latest(self) -> int:
        return len(self.migrations)


def ensure_state_dir(path: Path) -> None:
    """Create ``path`` (and parents) 0700 if missing; an unusable one is a ``StateError``."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StateError(f"state dir {path}: cannot create it ({exc.strerror}); create it "
                         "yourself or point [bot].state_dir elsewhere") from exc
    if not path.is_dir():
        raise StateError(f"state dir {path} is not a directory; point [bot].state_dir elsewhere")


def secure_file(path: Path) -> None:
    """Make a state file private: drop group and other permission bits (never adds one);
    best effort on files another user owns."""
    with contextlib.suppress(OSError):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, mode & 0o600)


def state_error(path: Path | str, exc: BaseException, doing: str = "open") -> StateError:
    """A ``StateError`` naming the file, what is wrong and the fix, for a SQLite/OS error."""
    text = str(exc)
    lower = text.lower()
    if "not a database" in lower or "malformed" in lower or "corrupt" in lower:
        what = f"is corrupt or not an allocbot state file ({text})"
        fix = FIX_HINT
    elif "readonly" in lower or "read-only" in lower:
        what = f"cannot be written ({text})"
        fix = ("make the file and its directory writable by this user (or free the disk), or "
               "point [bot].state_dir elsewhere")
    elif "permission" in lower or "unable to open" in lower or "disk i/o" in lower \
            or isinstance(exc, OSError):
        what = f"cannot be {'read' if doing == 'read' else 'opened or written'} ({text})"
        fix = ("make the file and its directory readable and writable by this user, or point "
               "[bot].state_dir elsewhere")
    elif "locked" in lower or "busy" in lower:
        what = f"is locked by another process ({text})"
        fix = "stop the other process using it, then retry"
    else:
        what = f"cannot be used ({text})"
        fix = FIX_HINT
    return StateError(f"state file {path} {what}; {fix}")


def connect(path: Path | str, *, read_only: bool = False, timeout_secs: float = 10.0
            ) -> sqlite3.Connection:
    """A connection in autocommit mode (``isolation_level=None``).

    Read-only connections use ``mode=ro`` and never create the file; when no writer has
    the file open (no ``-wal`` file) they also add ``immutable=1`` so SQLite creates no
    ``-wal``/``-shm`` beside it (a writer starting meanwhile appends to its WAL, which
    this reader then simply does not see).
    """
    target = str(path)
    try:
        if target == ":memory:":
            return sqlite3.connect(target, isolation_level=None, check_same_thread=False,
                                   timeout=timeout_secs)
        p = Path(path)
        if read_only:
            if not p.is_file():
                raise StateError(f"state file {p} does not exist; run 'allocbot once' (or the "
                                 "daemon) first, or check [bot].state_dir")
            immutable = "" if Path(f"{p}-wal").exists() else "&immutable=1"
            uri = f"{p.resolve().as_uri()}?mode=ro{immutable}"
            return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                                   timeout=timeout_secs)
        ensure_state_dir(p.parent)
        if not p.exists():
            os.close(os.open(p, os.O_RDWR | os.O_CREAT, 0o600))
        secure_file(p)
        return sqlite3.connect(target, isolation_level=None, check_same_thread=False,
                               timeout=timeout_secs)
    except (sqlite3.Error, OSError) as exc:
        raise state_error(path, exc) from exc


def _tables(db: sqlite3.Connection) -> set[str]:
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {r[0] for r in rows if not r[0].startswith("sqlite_")}


def _columns(db: sqlite3.Connection, table: str) -> list[tuple[str, str]]:
    return [(r[1], r[2].upper()) for r in db.execute(f"PRAGMA table_info('{table}')")]


def _v1_columns(schema: Schema) -> dict[str, list[tuple[str, str]]]:
    mem = sqlite3.connect(":memory:")
    try:
        mem.executescript(schema.migrations[0])
        return {t: _columns(mem, t) for t in schema.owned}
    finally:
        mem.close()


def _read_version(db: sqlite3.Connection, schema: Schema) -> int:
    if schema.version_table is None:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    if schema.version_table not in _tables(db):
        return 0
    row = db.execute(f"SELECT version FROM {schema.version_table}").fetchone()
    return 0 if row is None else int(row[0])


def _set_version_sql(schema: Schema, version: int) -> str:
    if schema.version_table is None:
        return f"PRAGMA user_version = {version};"
    t = schema.version_table
    return (f"CREATE TABLE IF NOT EXISTS {t} (version INTEGER NOT NULL); DELETE FROM {t}; "
            f"INSERT INTO {t} (version) VALUES ({version});")


def _known(schema: Schema, table: str) -> bool:
    return (table in schema.owned or table in schema.tolerated
            or table == schema.version_table or table.startswith(schema.tolerated_prefixes))


def _found_version(db: sqlite3.Connection, path: Path | str, schema: Schema) -> int:
    """The version on disk (0 = nothing of ours yet); refuses newer/foreign layouts."""
    version = _read_version(db, schema)
    where = f"state file {path}"
    if version > schema.latest:
        raise StateError(
            f"{where}: {schema.component} schema version {version} is newer than this allocbot "
            f"understands ({schema.latest}); upgrade allocbot, or {FIX_HINT}")
    tables = _tables(db)
    foreign = sorted(t for t in tables if not _known(schema, t))
    if foreign:
        raise StateError(f"{where} is not an allocbot state file (unknown tables: "
                         f"{', '.join(foreign[:5])}); {FIX_HINT}")
    if version == 0 and tables & schema.owned:
        expected = _v1_columns(schema)
        wrong = sorted(t for t in schema.owned if t not in tables
                       or _columns(db, t) != expected[t])
        if wrong:
            raise StateError(
                f"{where}: unversioned {schema.component} tables do not match any known "
                f"layout ({', '.join(wrong)} differ); {FIX_HINT}")
        return 1  # written by allocbot before schema versions: it is version 1
    return version


def open_schema(db: sqlite3.Connection, path: Path | str, schema: Schema,
                pragmas: tuple[str, ...] = ()) -> None:
    """Check the file, then (only if it is ours) apply ``pragmas`` and create or migrate
    ``schema`` to its latest version, each step in one transaction (a crash leaves the
    previous version intact). A refused file is not changed by a single byte."""
    try:
        if str(path) != ":memory:":
            _quick_check(db, path)
        version = _found_version(db, path, schema)
        for pragma in pragmas:
            db.execute(f"PRAGMA {pragma}")
        if version == 1 and _read_version(db, schema) == 0:
            db.executescript(f"BEGIN IMMEDIATE; {_set_version_sql(schema, 1)} COMMIT;")
        for step in range(version, schema.latest):
            db.executescript(f"BEGIN IMMEDIATE; {schema.migrations[step]}\n"
                             f"{_set_version_sql(schema, step + 1)} COMMIT;")
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise state_error(path, exc) from exc


def check_schema_read_only(db: sqlite3.Connection, path: Path | str, schema: Schema) -> None:
    """Verify a file can be read as ``schema`` without changing it."""
    try:
        _quick_check(db, path)
        version = _found_version(db, path, schema)
        if not (set(schema.owned) <= _tables(db)):
            raise StateError(f"state file {path} holds no {schema.component} yet; run "
                             "'allocbot once' (or the daemon) first, or check [bot].state_dir")
    except sqlite3.Error as exc:
        raise state_error(path, exc, doing="read") from exc
    if version < schema.latest:
        raise StateError(
            f"state file {path}: {schema.component} schema version {version} is older than "
            f"{schema.latest}; run 'allocbot once' (or the daemon) once to migrate it")


def _quick_check(db: sqlite3.Connection, path: Path | str) -> None:
    rows = db.execute("PRAGMA quick_check").fetchall()
    if [tuple(r) for r in rows] != [("ok",)]:
        detail = "; ".join(str(r[0]) for r in rows[:3])
        raise StateError(f"state file {path} is corrupt (integrity check: {detail}); {FIX_HINT}")


def backup_database(source: sqlite3.Connection, source_path: Path | str, dest: Path) -> int:
    """Copy ``source`` to a new file ``dest`` (0600) with the online backup API, then verify
    the copy; refuses to overwrite. Returns the copy's size in bytes."""
    if dest.exists():
        raise StateError(f"backup target {dest} already exists; choose a new file name")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(dest, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        target = sqlite3.connect(str(dest), isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise StateError(f"backup target {dest} cannot be written ({exc}); choose a "
                         "writable location") from exc
    try:
        source.backup(target)
        target.execute("PRAGMA journal_mode=DELETE")  # a self-contained single file
        _quick_check(target, dest)
    except BaseException as exc:
        target.close()
        dest.unlink(missing_ok=True)  # never leave a half-written backup behind
        if isinstance(exc, sqlite3.Error):
            raise state_error(source_path, exc, doing="read") from exc
        raise
    target.close()
    return dest.stat().st_size
