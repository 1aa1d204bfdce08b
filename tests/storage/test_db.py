"""Engine setup: SQLite pragmas on every connection, URL selection, and lock retries hidden from callers."""

from __future__ import annotations

import sqlite3
import threading

import pytest

import storage.db
from storage import Repository, StorageError

from .conftest import class_ids, rgb_png


def test_sqlite_pragmas_on_every_connection(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with Repository.open(tmp_path / "d") as repo:
        assert repo.dialect == "sqlite" and (tmp_path / "d" / "probeseg.db").is_file()
        engine = repo._ctx.db.engine
        conns = [engine.connect() for _ in range(3)]  # three distinct pooled connections
        try:
            for conn in conns:
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == storage.db.BUSY_TIMEOUT_MS
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        finally:
            for conn in conns:
                conn.close()


def test_database_url_env_and_explicit_url(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "elsewhere.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{other}")
    with Repository.open(tmp_path / "d") as repo:
        repo.create_project("x")
    assert other.is_file() and not (tmp_path / "d" / "probeseg.db").exists()
    explicit = tmp_path / "explicit.db"
    with Repository.open(tmp_path / "d", f"sqlite:///{explicit}") as repo:
        assert repo.list_projects() == [] and "explicit.db" in repo.db_url
    with pytest.raises(StorageError, match="in-memory"):
        Repository.open(tmp_path / "d", "sqlite://")


def test_locked_database_is_retried_not_raised(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(storage.db, "BUSY_TIMEOUT_MS", 20)  # make SQLite give up waiting quickly
    repo = Repository.open(tmp_path / "d")
    p = repo.create_project("p")
    image = repo.add_image(p.id, rgb_png(4, 4), "a.png")
    bg = class_ids(repo, p.id)["background"]
    seen: list[bool] = []
    original = storage.db.is_retryable

    def spy(exc: BaseException) -> bool:
        seen.append(original(exc))
        return seen[-1]

    monkeypatch.setattr(storage.db, "is_retryable", spy)
    monkeypatch.setattr(storage.db, "RETRY_BUDGET_S", 60.0)  # fail the test rather than hang if broken
    locker = sqlite3.connect(tmp_path / "d" / "probeseg.db", isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")  # another program holds the write lock ...
    release = threading.Timer(0.5, lambda: locker.execute("COMMIT"))  # ... for half a second
    release.start()
    try:
        ann = repo.add_point(image.id, bg, 1, 1, 0)  # must not raise "database is locked"
        assert ann.seq == 1
    finally:
        release.join()
        locker.close()
    assert seen and all(seen)  # the lock error was seen and retried
    assert repo.history(image.id)[0].id == ann.id
    repo.close()


def test_retryable_classification() -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    assert storage.db.is_retryable(OperationalError("x", {}, sqlite3.OperationalError("database is locked")))
    assert not storage.db.is_retryable(
        OperationalError("x", {}, sqlite3.OperationalError("no such table: t"))
    )
    assert not storage.db.is_retryable(
        IntegrityError("x", {}, sqlite3.IntegrityError("UNIQUE constraint failed"))
    )

    class PgError(Exception):
        sqlstate = "40001"

    assert storage.db.is_retryable(OperationalError("x", {}, PgError()))


def test_constraint_race_becomes_conflict_error(repo, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """If another process wins a race past our checks, the database constraint still yields a clear error."""
    import storage.projects
    from storage import ConflictError

    repo.create_project("same")
    monkeypatch.setattr(storage.projects, "_name_taken", lambda *a, **k: False)  # simulate the lost race
    with pytest.raises(ConflictError, match="reload and try again"):
        repo.create_project("same")
    assert [p.name for p in repo.list_projects()] == ["same"]
