"""Login: one user and password, checked in constant time, with failed attempts slowed down and logged.

Three back-offs, each waiting, after a few failures, twice as long per further failure up to a cap:
- per client address (LoginRequired, the middleware that sees the request): every attempt from an address
  that keeps failing waits;
- per user name and address together (login_check, which Gradio calls with the name and password; the
  middleware tells it the address): every attempt at that name from that address waits, so one address
  guessing a name never slows the real user logging in from another;
- per user name across all addresses, for guessing from many: only WRONG answers wait (after the check),
  so the right password always gets in at once from an address that has not failed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from pathlib import Path

from core.errors import InputError

log = logging.getLogger(__name__)

FREE_FAILURES = 3  # wrong passwords in a row before attempts are slowed down
MAX_DELAY_S = 30.0


class Backoff:
    """Failures in a row per key (a user name, a client address): after `free` of them each attempt waits
    2^(n - free) s, capped; a success resets the key. Bounded: the oldest keys are forgotten."""

    def __init__(self, what: str, free: int = FREE_FAILURES, max_delay_s: float = MAX_DELAY_S) -> None:
        self.what, self.free, self.max_delay_s = what, free, max_delay_s  # what: "for user %r", "from %s"
        self.failures: dict[str, int] = {}

    async def wait(self, key: str) -> None:
        n = self.failures.get(key, 0)
        if n >= self.free:
            await asyncio.sleep(min(self.max_delay_s, 2.0 ** (n - self.free)))

    def record(self, key: str, ok: bool) -> None:
        if ok:
            self.failures.pop(key, None)
            return
        self.failures[key] = self.failures.get(key, 0) + 1
        if len(self.failures) > 10_000:
            self.failures.pop(next(iter(self.failures)))
        log.warning(f"failed login {self.what} (%d in a row)", key, self.failures[key])


# The client address of the login request being checked: set by LoginRequired around the request, read by
# login_check (Gradio calls it with the name and password only). "?" when no middleware set it.
CLIENT: ContextVar[str] = ContextVar("probeseg_login_client", default="?")


def login_check(
    user: str, password: str, free_failures: int = FREE_FAILURES, max_delay_s: float = MAX_DELAY_S
) -> Callable[[str, str], Awaitable[bool]]:
    """An async `auth=` callable for Gradio that accepts exactly (user, password)."""
    per_client = Backoff("for user and address %r", free_failures, max_delay_s)
    per_user = Backoff("for user %r from any address", 10 * free_failures, max_delay_s)

    async def check(username: str, attempt: str) -> bool:
        name = username.strip().lower()[:200]
        key = f"{name}@{CLIENT.get()}"
        await per_client.wait(key)
        ok = hmac.compare_digest(username.encode(), user.encode()) & hmac.compare_digest(
            attempt.encode(), password.encode()
        )
        per_client.record(key, ok)
        per_user.record(name, ok)
        if not ok:
            await per_user.wait(name)  # many addresses guessing one name: their wrong answers come slowly
        return ok

    return check


def read_auth_file(path: str | os.PathLike) -> str:
    """'user:password' from the first line of a file that only its owner can read (chmod 600)."""
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--auth-file {p}: cannot read it ({exc.strerror or exc})") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(
            f"--auth-file {p} can be read by other users (mode {stat.filemode(mode)}); "
            f"make it private with `chmod 600 {p}`"
        )
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    if ":" not in line:
        raise InputError(f"--auth-file {p}: expected one line user:password")
    return line


# Gradio 6.31 answers these without the login its other routes require (checked: /reset and /cancel
# returned 200 and /heartbeat streamed without a session cookie). With a login configured they need it too.
UNGUARDED_BY_GRADIO = (
    "/gradio_api/reset",
    "/gradio_api/cancel",
    "/gradio_api/heartbeat/",
    "/gradio_api/stream/",
    "/gradio_api/run-history/",
    "/gradio_api/runs",
    "/gradio_api/vibe-edit",
    "/gradio_api/undo-vibe-edit",
    "/monitoring",
)


class LoginRequired:
    """ASGI middleware (passed to the Gradio app as `app_kwargs={"middleware": [...]}`), active when the app
    has a login: a request for one of UNGUARDED_BY_GRADIO without a valid login cookie gets 401, and failed
    logins are slowed down per client address (after FREE_FAILURES, each attempt from that address waits,
    doubling up to MAX_DELAY_S) and logged with the address."""

    def __init__(self, app, free_failures: int = FREE_FAILURES, max_delay_s: float = MAX_DELAY_S) -> None:
        self.app = app
        self.backoff = Backoff("from %s", free_failures, max_delay_s)

    async def __call__(self, scope, receive, send) -> None:
        gradio_app = scope.get("app")
        if scope.get("type") != "http" or getattr(gradio_app, "auth", None) is None:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path.startswith(UNGUARDED_BY_GRADIO) and not logged_in(scope, gradio_app):
            from starlette.responses import JSONResponse

            await JSONResponse({"detail": "Not authenticated"}, status_code=401)(scope, receive, send)
            return
        if path.rstrip("/") == "/login" and scope.get("method") == "POST":
            await self._login(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _login(self, scope, receive, send) -> None:
        client = (scope.get("client") or ("?", 0))[0]
        await self.backoff.wait(client)
        status: list[int] = []

        async def watch(message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        token = CLIENT.set(client)  # login_check keys its back-off on the name and this address
        try:
            await self.app(scope, receive, watch)
        finally:
            CLIENT.reset(token)
        if status:
            self.backoff.record(client, status[0] == 200)


def logged_in(scope, gradio_app) -> bool:
    from starlette.requests import Request

    cookies = Request(scope).cookies
    cid = getattr(gradio_app, "cookie_id", "")
    tokens = getattr(gradio_app, "tokens", {})
    return any(
        cookies.get(name) in tokens
        for name in (f"access-token-{cid}", f"access-token-unsecure-{cid}")
        if cookies.get(name)
    )
