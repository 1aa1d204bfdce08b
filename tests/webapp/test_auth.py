"""Login checks: constant-time comparison, back-off after failures, logged; the private auth file."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from webapp.auth import login_check, read_auth_file


def test_failed_logins_are_slowed_down_and_logged(caplog):
    check = login_check("ann", "s3cret", free_failures=2, max_delay_s=0.4)

    async def attempt(user: str, password: str) -> tuple[bool, float]:
        start = time.perf_counter()
        ok = await check(user, password)
        return ok, time.perf_counter() - start

    async def scenario():
        results = [await attempt("ann", "wrong") for _ in range(5)]
        right = await attempt("ann", "s3cret")  # still slowed after the failures, but accepted
        after = await attempt("ann", "s3cret")  # success resets the count
        other = await attempt("bob", "s3cret")  # unknown user: refused
        return results, right, after, other

    with caplog.at_level(logging.WARNING, logger="webapp.auth"):
        results, right, after, other = asyncio.run(scenario())
    assert [ok for ok, _ in results] == [False] * 5
    assert results[0][1] < 0.1 and results[1][1] < 0.1  # the first failures are free
    assert results[3][1] >= 0.18 and results[4][1] >= 0.35  # then the wait doubles, up to the cap
    assert right[0] and right[1] >= 0.35
    assert after[0] and after[1] < 0.1
    assert not other[0]
    assert sum("failed login for user 'ann'" in r.getMessage() for r in caplog.records) == 5


def test_auth_file_must_be_private_and_well_formed(tmp_path):
    f = tmp_path / "auth"
    f.write_text("ann:s3cret\n")
    f.chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        read_auth_file(f)
    f.chmod(0o600)
    assert read_auth_file(f) == "ann:s3cret"
    f.write_text("no colon here\n")
    with pytest.raises(ValueError, match="user:password"):
        read_auth_file(f)
    with pytest.raises(ValueError, match="cannot read"):
        read_auth_file(tmp_path / "missing")


def test_serve_flags_parse_into_the_config(tmp_path):
    from cli.main import build_parser
    from cli.serve import config_from_args

    f = tmp_path / "auth"
    f.write_text("ann:s3cret\n")
    f.chmod(0o600)
    args = build_parser().parse_args(["serve", "--auth-file", str(f), "--import-root", str(tmp_path),
                                      "--import-root", "/srv/images"])
    cfg = config_from_args(args)
    assert cfg.auth_pair() == ("ann", "s3cret") and cfg.import_roots == (str(tmp_path), "/srv/images")
    assert config_from_args(build_parser().parse_args(["serve"])).import_roots == ()
