"""The engine's event stream: per project, in order, resumable, and a waiting follower is woken by a publish
from another thread (no polling)."""

from __future__ import annotations

import asyncio
import threading
import time

from engine.events import EventBus


def test_events_are_per_project_in_order_and_resumable():
    bus = EventBus(keep=5)
    assert bus.last == 0 and bus.since(1, 0) == []
    a = bus.publish(1, "labels", image_id=3, client="tab-a")
    bus.publish(2, "head", version=1)
    c = bus.publish(1, "classes")
    assert [e.seq for e in bus.since(1, 0)] == [a.seq, c.seq] and bus.since(1, a.seq) == [c]
    assert [e.kind for e in bus.since(2, 0)] == ["head"]
    assert a.sse() == f'id: {a.seq}\nevent: labels\ndata: {{"image_id":3,"client":"tab-a"}}\n\n'
    for _ in range(5):
        bus.publish(1, "features")
    # a follower further behind than the kept events is told to reload what it shows
    assert [e.kind for e in bus.since(1, a.seq)] == ["resync"]


def test_a_waiting_follower_wakes_on_a_publish_from_another_thread_and_times_out_otherwise():
    bus = EventBus()

    async def follow() -> tuple[list, float, list]:
        start = bus.last
        t0 = time.monotonic()
        threading.Timer(0.2, lambda: bus.publish(7, "head", version=1)).start()
        threading.Timer(
            0.1, lambda: bus.publish(8, "head", version=1)
        ).start()  # another project's: sleeps on
        got = await bus.wait(7, start, timeout=30)
        waited = time.monotonic() - t0
        quiet = await bus.wait(7, got[-1].seq, timeout=0.2)
        return got, waited, quiet

    got, waited, quiet = asyncio.run(follow())
    assert [(e.project_id, e.kind) for e in got] == [(7, "head")]
    assert waited < 10  # woken by the publish (the timeout was 30 s)
    assert quiet == []
