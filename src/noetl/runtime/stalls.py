"""Why a ready command may never be claimed: the deployment has no worker that can take it.

A command waits in the queue until a worker serving its pool has room for it - and for its
resources (``spec.resources``), when they are worker resources rather than global ones. If no live
worker serves the pool, or none offers enough of a worker resource, the command would wait
forever with nothing to say why. :func:`reasons` names what is missing and how to provide it; the
server reports it with an execution's status (``stalled``) and ``noetl run --runtime distributed``
prints it while it waits. Waiting for capacity that exists but is busy is not a stall.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any


def reasons(
    pool: str,
    needs: Mapping[str, Any] | None,
    workers: Sequence[Mapping[str, Any]],
    global_resources: Collection[str],
) -> list[str]:
    """What keeps a command of ``pool`` with ``needs`` from ever being claimed by ``workers`` (the
    live ones: ``pools`` and ``meta.resources``); empty when some worker could take it."""
    serving = [w for w in workers if pool in (w.get("pools") or ())]
    if not serving:
        return [f"no live worker serves pool '{pool}' (start one: noetl worker start --pool {pool})"]
    found: list[str] = []
    wanted = (needs or {}).get("resources") or {}
    for name, amount in sorted(wanted.items()):
        if name in global_resources:
            continue
        offered = max(int(((w.get("meta") or {}).get("resources") or {}).get(name, 0)) for w in serving)
        if offered < int(amount):
            found.append(
                f"needs {name}={amount}, but no live worker of pool '{pool}' offers that much "
                f"(most: {offered}) and no global resource '{name}' is set (noetl resource set {name} N, "
                f"or noetl worker start --pool {pool} --resources {name}={amount})"
            )
    return found
