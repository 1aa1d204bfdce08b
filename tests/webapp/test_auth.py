"""Login checks: constant-time comparison, back-off after failures, logged; the private auth file."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from webapp.auth import login_check, read_auth_file


def test_failed_logins_are_slowed_down_per_name_and_address_and_logged(caplog):
    from webapp.auth import CLIENT

    check = login_check("ann", "s3cret", free_failures=2, max_delay_s=0.4)

    async def attempt(user: str, password: str, client: str = "10.0.0.1") -> tuple[bool, float]:
        token = CLIENT.set(client)
        try:
            start = time.perf_counter()
            ok = await check(user, password)
            return ok, time.perf_counter() - start
        finally:
            CLIENT.reset(token)

    async def scenario():
        results = [await attempt("ann", "wrong") for _ in range(5)]
        elsewhere = await attempt("ann", "s3cret", client="10.0.0.2")  # the real user, another address
        right = await attempt("ann", "s3cret")  # from the guessing address: slowed, but accepted
        after = await attempt("ann", "s3cret")  # success resets the count
        other = await attempt("bob", "s3cret")  # unknown user: refused
        return results, elsewhere, right, after, other

    with caplog.at_level(logging.WARNING, logger="webapp.auth"):
        results, elsewhere, right, after, other = asyncio.run(scenario())
    assert [ok for ok, _ in results] == [False] * 5
    assert results[0][1] < 0.1 and results[1][1] < 0.1  # the first failures are free
    assert results[3][1] >= 0.18 and results[4][1] >= 0.35  # then the wait doubles, up to the cap
    assert elsewhere[0] and elsewhere[1] < 0.3  # one address guessing never slows another's login (0.4 s)
    assert right[0] and right[1] >= 0.35
    assert after[0] and after[1] < 0.1
    assert not other[0]
    assert (
        sum("failed login for user and address 'ann@10.0.0.1'" in r.getMessage() for r in caplog.records) == 5
    )


def test_guessing_one_name_from_many_addresses_slows_wrong_answers_only():
    from webapp.auth import CLIENT

    check = login_check("ann", "s3cret", free_failures=1, max_delay_s=0.3)

    async def attempt(password: str, client: str) -> tuple[bool, float]:
        token = CLIENT.set(client)
        try:
            start = time.perf_counter()
            return await check("ann", password), time.perf_counter() - start
        finally:
            CLIENT.reset(token)

    async def scenario():
        wrong = [await attempt("guess", f"10.1.0.{i}") for i in range(14)]  # a new address each time
        return wrong, await attempt("s3cret", "10.2.0.1")

    wrong, right = asyncio.run(scenario())
    assert wrong[-1][1] >= 0.25 and not wrong[-1][0]  # past the per-name cap, wrong answers come slowly
    assert right[0] and right[1] < 0.2  # the right password gets in at once (a wrong one waits 0.3 s)


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
    args = build_parser("serve").parse_args(
        ["serve", "--auth-file", str(f), "--import-root", str(tmp_path), "--import-root", "/srv/images"]
    )
    cfg = config_from_args(args)
    assert cfg.auth_pair() == ("ann", "s3cret") and cfg.import_roots == (str(tmp_path), "/srv/images")
    assert config_from_args(build_parser("serve").parse_args(["serve"])).import_roots == ()


def test_failed_logins_are_slowed_down_per_client_address(tmp_path, random_backbone, caplog):
    import urllib.error
    import urllib.parse
    import urllib.request

    from tests.webapp.test_server import free_port
    from webapp import auth, server
    from webapp.config import ServeConfig

    cfg = ServeConfig(
        port=free_port(),
        data_dir=str(tmp_path / "data"),
        weights="random",
        resolution="112",
        auth="ann:secret",
    )
    ctx = server.create_context(cfg, backbone=random_backbone)
    demo = server.build_app(cfg, ctx)
    kwargs = server.launch_kwargs(cfg, ctx)
    kwargs["auth"] = auth.login_check("ann", "secret", free_failures=100)  # isolate the per-address back-off
    kwargs["app_kwargs"]["middleware"][0].kwargs.update(free_failures=2, max_delay_s=0.5)

    def login(password: str) -> tuple[int, float]:
        body = urllib.parse.urlencode({"username": "ann", "password": password}).encode()
        start = time.perf_counter()
        try:
            code = urllib.request.urlopen(f"{cfg.url}/login", data=body, timeout=60).status
        except urllib.error.HTTPError as err:
            code = err.code
        return code, time.perf_counter() - start

    try:
        with caplog.at_level(logging.WARNING, logger="webapp.auth"):
            demo.launch(prevent_thread_lock=True, **kwargs)
            fails = [login("wrong") for _ in range(4)]
            ok = login("secret")
        assert [c for c, _ in fails] == [400] * 4 and ok[0] == 200
        assert fails[3][1] >= 0.45 and ok[1] >= 0.45  # slowed after two failures, the right password too
        assert sum("failed login from 127.0.0.1" in r.getMessage() for r in caplog.records) == 4
    finally:
        demo.close()
        ctx.engine.close()
