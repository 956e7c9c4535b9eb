"""The status API's fold cache reads and folds only the events appended since its last fold
(issue 17: polling a long execution used to refold its whole log on every request)."""

from __future__ import annotations

from noetl.engine import events as ev
from noetl.engine.state import fold
from noetl.server.folds import Folds
from noetl.store import events
from noetl.store.db import Connection


def steps(first: int, count: int) -> list[ev.Event]:
    return [ev.Event(ev.STEP_ENTER, f"s{n}", at=1.0, id=n) for n in range(first, first + count)]


async def test_each_poll_folds_only_the_new_events(conn: Connection) -> None:
    folds = Folds()
    start = ev.Event(ev.PLAYBOOK_INITIALIZED, data={"execution_id": "9", "workload": {}}, at=1.0, id=1)
    await events.append(conn, 9, 1, [start, *steps(2, 499)])
    first = await folds.state(conn, 9)
    assert first.last_event_id == 500 and folds.folded == 500

    for poll in range(10):  # a client polling a running execution: ten new events each time
        new = steps(501 + 10 * poll, 10)
        await events.append(conn, 9, new[0].id, new)
        state = await folds.state(conn, 9)
    assert folds.folded == 500 + 100  # not 500 + 510 + 520 + ... as a refold per poll would
    assert state.last_event_id == 600
    assert state == fold(await events.read(conn, 9))  # the same state a fresh fold gives
