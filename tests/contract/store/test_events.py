"""The event log: batched appends, ordered reads that rebuild Event objects exactly, counts."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from noetl.engine.events import Event
from noetl.store import events
from noetl.store.db import Connection
from noetl.store.errors import StoreConflict

EXECUTION = 9001


def sample() -> list[Event]:
    return [
        Event("playbook.initialized", None, None, {"payload": {"x": 1}}, 1_700_000_000.123456),
        Event("step.enter", "start", None, {}, 1_700_000_000.5),
        Event("command.issued", "start", f"{EXECUTION}:1", {"index": None, "u": "żółw"}, 1_700_000_001.25),
    ]


async def test_appended_events_read_back_equal_with_ids(conn: Connection) -> None:
    await events.append(conn, EXECUTION, 1, sample())
    later = [
        Event("call.done", "start", f"{EXECUTION}:1", MappingProxyType({"result": [1, 2]}), 1_700_000_002.0)
    ]
    await events.append(conn, EXECUTION, 4, later)
    await events.append(conn, EXECUTION + 1, 1, sample()[:1])

    read = await events.read(conn, EXECUTION)
    expected = [
        Event(e.name, e.step, e.command_id, dict(e.data), e.at, i) for i, e in enumerate(sample() + later, 1)
    ]
    assert read == expected
    assert read[0].at == 1_700_000_000.123456
    assert await events.count(conn, EXECUTION) == 4
    assert await events.count(conn, EXECUTION + 1) == 1
    assert await events.count(conn, 1) == 0


async def test_read_after_limit_and_type(conn: Connection) -> None:
    await events.append(conn, EXECUTION, 1, sample() + sample())
    assert [e.id for e in await events.read(conn, EXECUTION, after=2)] == [3, 4, 5, 6]
    assert [e.id for e in await events.read(conn, EXECUTION, after=2, limit=2)] == [3, 4]
    assert [e.id for e in await events.read(conn, EXECUTION, event_type="step.enter")] == [2, 5]
    assert [e.id for e in await events.read(conn, EXECUTION, after=2, event_type="step.enter")] == [5]
    assert await events.read(conn, EXECUTION, after=6) == []


async def test_empty_append_is_a_no_op_and_reused_ids_are_refused(conn: Connection) -> None:
    await events.append(conn, EXECUTION, 1, [])
    assert await events.count(conn, EXECUTION) == 0
    await events.append(conn, EXECUTION, 1, sample())
    with pytest.raises(StoreConflict) as caught:
        await events.append(conn, EXECUTION, 3, sample())
    assert caught.value.http_status == 409 and caught.value.sqlstate == "23505"
    assert await events.count(conn, EXECUTION) == 3
