"""Engine setup, transactions with retry, and schema migrations (Alembic, driven programmatically)."""

from __future__ import annotations

import logging
import os
import random
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .errors import ConflictError, DatabaseBusyError, DatabaseUnusableError, StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
BUSY_TIMEOUT_MS = 10_000
CONNECT_TIMEOUT_S = 10  # a database server that accepts but never answers must not hang start-up
RETRY_BUDGET_S = 300.0
_PG_MIGRATION_LOCK = 0x70726F62  # pg_advisory_xact_lock key ("prob")
_RETRY_SQLSTATES = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_db_engine(url: str) -> Engine:
    """An engine for any SQLAlchemy URL; SQLite connections get WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs: dict[str, Any] = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
        if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() in ("", "psycopg2"):
            try:  # prefer psycopg 3 (what requirements install) when the URL names no driver
                import psycopg  # noqa: F401

                parsed = parsed.set(drivername="postgresql+psycopg")
            except ImportError:
                pass
        return create_engine(parsed, **kwargs)
    if parsed.database in (None, "", ":memory:"):
        raise StorageError(
            "an in-memory SQLite database cannot be shared between sessions; use a file URL "
            "such as sqlite:////path/to/probeseg.db"
        )
    engine = create_engine(
        parsed,
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        pool_size=10,
        max_overflow=20,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys = ON")
            for _ in range(100):
                try:
                    mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    break
                except Exception as exc:  # locked while another process creates the file
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    time.sleep(0.05)
            else:
                mode = "?"
            if str(mode).lower() != "wal":
                log.warning("SQLite journal_mode is %s, not WAL (file system without shared memory?)", mode)
            cur.execute("PRAGMA synchronous = FULL")  # an acknowledged write survives power loss too
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def is_retryable(exc: BaseException) -> bool:
    """True for transient lock / serialization errors that a retry of the whole transaction fixes."""
    if isinstance(exc, OperationalError):
        msg = str(getattr(exc, "orig", exc)).lower()
        if "database is locked" in msg or "database table is locked" in msg or "busy" in msg:
            return True
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
        if sqlstate in _RETRY_SQLSTATES:
            return True
    return False


class Database:
    """Owns the engine and every session. `read(fn)` / `write(fn)` run fn(session) in one transaction,
    retrying transient lock errors so that callers never see 'database is locked'."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self.is_sqlite = _is_sqlite(self.engine)
        write_engine = (
            self.engine.execution_options(sqlite_begin="IMMEDIATE") if self.is_sqlite else self.engine
        )
        self._read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(write_engine, expire_on_commit=False)
        # SQLite allows one writer at a time anyway; queueing threads here is fairer than the busy handler.
        self._write_lock = threading.Lock() if self.is_sqlite else None

    def dispose(self) -> None:
        self.engine.dispose()

    def _run(
        self, fn: Callable[[Session], T], factory: sessionmaker[Session], lock: threading.Lock | None
    ) -> T:
        deadline = time.monotonic() + RETRY_BUDGET_S
        delay = 0.01
        while True:
            try:
                if lock is not None:
                    with lock:
                        return self._once(fn, factory)
                return self._once(fn, factory)
            except DBAPIError as exc:
                if not is_retryable(exc):
                    raise
                if time.monotonic() > deadline:
                    raise DatabaseBusyError(
                        f"the database stayed locked for {RETRY_BUDGET_S:.0f} s ({exc.orig}); another program "
                        "may hold a long transaction on it - close it and retry"
                    ) from exc
                log.debug("retrying transaction after transient error: %s", exc.orig)
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.5)

    @staticmethod
    def _once(fn: Callable[[Session], T], factory: sessionmaker[Session]) -> T:
        with factory() as session:
            with session.begin():
                return fn(session)

    def read(self, fn: Callable[[Session], T]) -> T:
        return self._run(fn, self._read_sessions, None)

    def write(self, fn: Callable[[Session], T]) -> T:
        """Run fn in a write transaction and commit before returning. A constraint violation that the
        checks in fn did not catch (a race with another process) becomes a ConflictError."""
        try:
            return self._run(fn, self._write_sessions, self._write_lock)
        except IntegrityError as exc:
            raise ConflictError(
                f"the change conflicts with data written at the same time by someone else "
                f"({exc.orig}); reload and try again"
            ) from exc

    # ------------------------------------------------------------------ migrations
    def upgrade(self, revision: str = "head") -> None:
        """Upgrade the schema (serialised across processes: BEGIN IMMEDIATE / an advisory lock)."""
        upgrade(self.engine, revision)


def check_database(db: Database) -> None:
    """Refuse, with a message naming the file or URL and the fix, a database that cannot be used as it is:
    not a database, corrupt, read-only, from a newer release, or a server that is unreachable or silent.
    Runs before any write, so a refused database is left untouched."""
    url = db.engine.url
    shown = url.render_as_string(hide_password=True)
    path = Path(url.database or "") if db.is_sqlite else None
    exists = path is not None and path.exists()
    if path is not None and exists:
        if not path.is_file():
            raise DatabaseUnusableError(
                f"{path} is not a file; give --data-dir (or --db) a probeseg database"
            )
        try:
            with open(path, "rb") as f:
                header = f.read(16)
        except OSError as exc:
            raise DatabaseUnusableError(
                f"{path}: cannot read it ({exc.strerror}); fix its permissions or use another --data-dir"
            ) from None
        if header and header != b"SQLite format 3\x00":
            raise DatabaseUnusableError(
                f"{path} is not an SQLite database (it holds other data); move it away or "
                "use another --data-dir"
            )
        for file in (path, *journals(path)):
            # Read-only by its mode (chmod a-w) is refused even for a user the kernel would let write
            # (root): an administrator's read-only file stays read-only, byte for byte and mode for mode.
            if file.is_file() and (not file.stat().st_mode & stat.S_IWUSR or not os.access(file, os.W_OK)):
                raise DatabaseUnusableError(
                    f"{file} is read-only (mode {stat.S_IMODE(file.stat().st_mode):o}); make it and its "
                    "folder writable for this user (chmod u+w), or use another --data-dir"
                )
    elif path is not None and not os.access(path.parent, os.W_OK):
        raise DatabaseUnusableError(
            f"cannot create {path}: the folder {path.parent} is read-only for this user; "
            "use another --data-dir"
        )
    try:
        if exists:
            raw = db.engine.raw_connection()  # autocommit DBAPI connection: we control the transaction
            try:
                cur = raw.cursor()
                result = cur.execute("PRAGMA quick_check").fetchone()[0]
                if str(result).lower() != "ok":
                    raise DatabaseUnusableError(
                        f"{path} is corrupt (integrity check: {str(result)[:120]}); restore "
                        "it from a backup or use another --data-dir"
                    )
                cur.execute("BEGIN IMMEDIATE")  # can we write? (read-only files or mounts)
                cur.execute("ROLLBACK")
            finally:
                raw.close()
        with db.engine.connect() as conn:
            revision = MigrationContext.configure(conn).get_current_revision()
    except DatabaseUnusableError:
        raise
    except Exception as exc:  # DBAPIError, or the driver's own error raised while a connection is set up
        reason = (str(getattr(exc, "orig", exc)).strip().splitlines() or [type(exc).__name__])[0][:200]
        if path is None:
            raise DatabaseUnusableError(
                f"cannot use the database {shown} ({reason}); check that the server runs "
                "and accepts this user, or omit --db to use SQLite in --data-dir"
            ) from None
        if "readonly" in reason.replace(" ", "").lower() or "read-only" in reason.lower():
            raise DatabaseUnusableError(
                f"{path} is read-only ({reason}); make it and its folder writable for "
                "this user, or use another --data-dir"
            ) from None
        raise DatabaseUnusableError(
            f"{path} cannot be used ({reason}); it may be corrupt: restore it from a "
            "backup or use another --data-dir"
        ) from None
    known = {r.revision for r in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if revision is not None and revision not in known:
        where = path if path is not None else shown
        raise DatabaseUnusableError(
            f"{where} was written by a newer probeseg (schema revision {revision}); "
            "upgrade probeseg or use another --data-dir"
        )


def journals(path: Path) -> tuple[Path, Path]:
    """The -wal and -shm files SQLite keeps beside a database in WAL mode."""
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def tighten(path: Path) -> None:
    """Make a database file private by removing group and other permissions; never adds one (a read-only
    file stays read-only)."""
    for f in (path, *journals(path)):
        if f.is_file():
            mode = stat.S_IMODE(f.stat().st_mode)
            if mode & 0o077:
                f.chmod(mode & ~0o077)


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def upgrade(engine: Engine, revision: str = "head") -> None:
    target = head_revision() if revision == "head" else revision
    with engine.connect() as conn:
        if MigrationContext.configure(conn).get_current_revision() == target:
            return
    sqlite = _is_sqlite(engine)
    eng = engine.execution_options(sqlite_begin="IMMEDIATE") if sqlite else engine
    deadline = time.monotonic() + RETRY_BUDGET_S
    while True:
        try:
            with eng.connect() as conn:
                raw = conn.connection.dbapi_connection
                assert raw is not None  # an open connection has its DBAPI connection
                if sqlite:
                    # SQLite's way to alter a table is copy + drop + rename; with foreign keys on, dropping
                    # the old table would cascade-delete every child row. Turn them off (only possible
                    # outside a transaction) and check the result before committing instead.
                    raw.execute("PRAGMA foreign_keys = OFF")
                try:
                    with conn.begin():
                        if conn.dialect.name == "postgresql":
                            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
                        cfg = alembic_config()
                        cfg.attributes["connection"] = conn
                        command.upgrade(cfg, revision)
                        if sqlite:
                            bad = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                            if bad:
                                raise StorageError(
                                    f"schema upgrade to {revision} would break foreign keys "
                                    f"({bad[:3]}); the upgrade was rolled back - report this bug"
                                )
                finally:
                    if sqlite:
                        raw.execute("PRAGMA foreign_keys = ON")
            return
        except DBAPIError as exc:
            if not is_retryable(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05 + random.random() * 0.1)
