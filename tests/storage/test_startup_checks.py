"""Repository.open refuses unusable databases before writing anything, with a message naming the file or
URL and the fix; the CLI turns that into one line and exit code 1."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from storage import DatabaseUnusableError, Repository

ROOT = Path(__file__).resolve().parents[2]


def _db(tmp_path: Path, content: bytes | None = None) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    if content is not None:
        (folder / "probeseg.db").write_bytes(content)
    return folder


def _refused(folder: Path, match: str, db_url: str | None = None) -> str:
    db = folder / "probeseg.db"
    before = db.read_bytes() if db.is_file() else None
    with pytest.raises(DatabaseUnusableError, match=match) as err:
        Repository.open(folder, db_url)
    assert (db.read_bytes() if db.is_file() else None) == before  # untouched
    msg = str(err.value)
    assert "Traceback" not in msg and "sqlalchemy" not in msg.lower()
    return msg


def _valid_db(tmp_path: Path) -> Path:
    folder = tmp_path / "good"
    with Repository.open(folder) as repo:
        project = repo.create_project("p")
        for i in range(40):
            repo.add_class(project.id, f"class {i}")
    con = sqlite3.connect(folder / "probeseg.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return folder


def test_a_file_that_is_not_a_database(tmp_path):
    folder = _db(tmp_path, b"this is a text file, not SQLite\n" * 50)
    msg = _refused(folder, "is not an SQLite database")
    assert str(folder / "probeseg.db") in msg and "--data-dir" in msg


def test_a_corrupt_database(tmp_path):
    folder = _valid_db(tmp_path)
    db = folder / "probeseg.db"
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[2 * page : len(data) - page] = b"\xde\xad\xbe\xef" * ((len(data) - 3 * page) // 4)
    db.write_bytes(bytes(data))
    _refused(folder, "corrupt|cannot be used")


def test_a_schema_from_a_newer_release(tmp_path):
    folder = _valid_db(tmp_path)
    con = sqlite3.connect(folder / "probeseg.db")
    con.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    con.commit()
    con.close()
    msg = _refused(folder, "newer probeseg")
    assert "ffffffffffff" in msg and "upgrade probeseg" in msg


def test_a_read_only_database(tmp_path):
    folder = _valid_db(tmp_path)
    url = f"sqlite:///file:{folder / 'probeseg.db'}?mode=ro&uri=true"  # read-only even for root
    with pytest.raises(DatabaseUnusableError, match="read-only"):
        Repository.open(folder, url)


def test_a_database_server_that_refuses_connections(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    msg = _refused(
        _db(tmp_path),
        "cannot use the database",
        f"postgresql+psycopg://probeseg:secret@127.0.0.1:{port}/probeseg",
    )
    assert "secret" not in msg and f"127.0.0.1:{port}" in msg


def test_a_database_server_that_never_answers_times_out(tmp_path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():  # accept and then say nothing, like a hung server
        server.settimeout(0.5)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        start = time.monotonic()
        _refused(_db(tmp_path), "cannot use the database", f"postgresql+psycopg://u:p@127.0.0.1:{port}/db")
        assert time.monotonic() - start < 120
    finally:
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        server.close()


def test_the_cli_prints_one_line_and_exits_1(tmp_path):
    folder = _db(tmp_path, b"garbage" * 100)
    cmd = [sys.executable, "app.py", "serve", "--data-dir", str(folder), "--weights", "random"]
    out = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert out.returncode == 1, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "is not an SQLite database" in out.stderr
    assert len([line for line in out.stderr.splitlines() if line.startswith("error:")]) == 1


def test_the_database_and_its_journal_are_private(tmp_path):
    with Repository.open(tmp_path / "data") as repo:
        repo.create_project("p")
        db = tmp_path / "data" / "probeseg.db"
        for f in (db, db.with_name("probeseg.db-wal")):
            assert f.is_file() and (f.stat().st_mode & 0o077) == 0, oct(f.stat().st_mode)


def _modes(folder: Path) -> dict[str, int]:
    return {f.name: f.stat().st_mode & 0o7777 for f in folder.glob("probeseg.db*")}


def test_a_database_chmodded_read_only_stays_read_only(tmp_path):
    """An administrator's `chmod 444 probeseg.db*`: start-up stops with the one line, and the files keep
    their bytes and modes (the server used to chmod them to 600, adding the write permission back)."""
    folder = _valid_db(tmp_path)
    for f in folder.glob("probeseg.db*"):
        f.chmod(0o444)
    modes = _modes(folder)
    msg = _refused(folder, "read-only")
    assert "chmod u+w" in msg and _modes(folder) == modes


def test_tightening_only_removes_permissions(tmp_path):
    folder = _valid_db(tmp_path)
    db = folder / "probeseg.db"
    db.chmod(0o644)
    Repository.open(folder).close()
    assert db.stat().st_mode & 0o777 == 0o600  # group and other bits removed
    db.chmod(0o640)  # rw-r-----: the group's read goes, the owner's permissions stay
    Repository.open(folder).close()
    assert db.stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(not Path("/usr/bin/setpriv").exists(), reason="util-linux setpriv missing")
def test_the_server_without_dac_override_refuses_a_read_only_database(tmp_path):
    """As a service user would run it: a process without CAP_DAC_OVERRIDE (or as a non-root user) starting
    the CLI on a read-only database exits 1 with one line and leaves the files as they were."""
    folder = _valid_db(tmp_path)
    for f in folder.glob("probeseg.db*"):
        f.chmod(0o444)
    modes, data = _modes(folder), (folder / "probeseg.db").read_bytes()
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--inh-caps=-all", "--"]
    probe = subprocess.run([*drop, sys.executable, "-c", "print(1)"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr.strip()[:200]}")
    script = (
        "import sys\nfrom storage import Repository\n"
        "try:\n    Repository.open(sys.argv[1]).close()\nexcept Exception as e:\n"
        "    print(type(e).__name__, e)\n    sys.exit(1)\n"
    )
    out = subprocess.run(
        [*drop, sys.executable, "-c", script, str(folder)], capture_output=True, text=True, cwd=ROOT
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "DatabaseUnusableError" in out.stdout and "read-only" in out.stdout
    assert _modes(folder) == modes and (folder / "probeseg.db").read_bytes() == data
