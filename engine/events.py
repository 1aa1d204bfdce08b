"""One event stream per project: what changed on the server, pushed to whoever follows it.

The engine publishes (from any thread: the trainer, the feature worker, a request's worker thread) and the
REST API streams each project's events to its clients (server-sent events, `GET /events`): new heads
(interim and final), label changes by anyone (with the client that made them), feature progress, class
changes and imports. Waiting costs nothing: a follower's asyncio task sleeps on an asyncio.Event that a
publish sets through its loop (no polling, no thread per follower).

Events carry a sequence number shared by all projects; a follower asks for those after the last it saw.
The most recent `keep` are kept; one that fell further behind gets a `resync` event (reload what it shows).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    seq: int
    project_id: int
    kind: str  # head | labels | features | classes | images | resync
    data: dict = field(default_factory=dict)

    def sse(self) -> str:
        """The event as a server-sent-events message (its id lets a reconnecting browser resume)."""
        return f"id: {self.seq}\nevent: {self.kind}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n"


class EventBus:
    def __init__(self, keep: int = 4096):
        self._lock = threading.Lock()
        self._events: deque[Event] = deque(maxlen=keep)
        self._seq = 0
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @property
    def last(self) -> int:
        """The newest event's sequence number (0: none yet): where a new follower starts."""
        with self._lock:
            return self._seq

    def publish(self, project_id: int, kind: str, **data: object) -> Event:
        with self._lock:
            self._seq += 1
            event = Event(self._seq, project_id, kind, data)
            self._events.append(event)
            waiters = list(self._waiters)
        for loop, wake in waiters:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # that follower's loop has closed
                pass
        return event

    def since(self, project_id: int, after: int) -> list[Event]:
        """The project's events after sequence number `after` ([resync] when some were already dropped)."""
        with self._lock:
            if self._events and after < self._events[0].seq - 1:
                return [Event(self._seq, project_id, "resync")]
            return [e for e in self._events if e.seq > after and e.project_id == project_id]

    async def wait(self, project_id: int, after: int, timeout: float) -> list[Event]:
        """The project's events after `after`, waiting up to `timeout` seconds for one ([] if none came)."""
        loop = asyncio.get_running_loop()
        waiter = (loop, asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)  # before looking, so a publish in between still wakes us
        try:
            deadline = loop.time() + timeout
            while True:
                events = self.since(project_id, after)
                remaining = deadline - loop.time()
                if events or remaining <= 0:
                    return events
                try:
                    await asyncio.wait_for(waiter[1].wait(), remaining)
                except TimeoutError:
                    return []
                waiter[1].clear()
        finally:
            with self._lock:
                self._waiters.discard(waiter)
