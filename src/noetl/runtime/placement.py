"""Where and how a command waits in the queue: its pool, priority, concurrency key and needs.

The engine decides *what* runs (a step, an iteration); this module decides *where* it queues, from
the playbook's scheduling settings (docs/scheduling.md):

* **pool** - the step's ``spec.pool``; else the playbook's ``executor.spec.pools`` entry for the
  step's tool kind; else the deployment's default for that kind; else ``default``.
* **priority** - the step's ``spec.priority`` plus the execution's priority: the execute request's
  ``priority`` when it gave one, else ``executor.spec.priority``. Higher runs first.
* **concurrency key** - the step's ``spec.concurrency_key`` rendered with the command's context
  (a key that does not render stays the template text, so its limit still holds).
* **needs** - what the claim must check before leasing: ``resources``, ``key_limit`` (the step's
  ``spec.concurrency_limit``), ``gate``/``gate_limit`` (``executor.spec.max_concurrent_executions``).
  A keyed command has needs (maybe empty) so that its key's in-flight count sees it.

A command with needs goes to the queue ready: only the checked claim leases it, never the fast
path where a reporting worker leases the commands its own report produced.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from noetl.dsl import templates
from noetl.dsl.model import Playbook, Step
from noetl.engine import events as ev
from noetl.errors import NoetlError, UsageError

log = logging.getLogger("noetl.placement")

DEFAULT_POOL = "default"


def kind_pools(text: str) -> dict[str, str]:
    """``"python=cpu,http=io"`` (NOETL_POOLS_BY_KIND) as ``{"python": "cpu", "http": "io"}``."""
    found: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        kind, sep, name = part.partition("=")
        if not part:
            continue
        if not sep or not kind.strip() or not name.strip():
            raise UsageError(f"NOETL_POOLS_BY_KIND: {part!r} is not KIND=POOL (e.g. python=cpu,http=io)")
        found[kind.strip()] = name.strip()
    return found


def pool(playbook: Playbook, step: Step, kind_pools: Mapping[str, str]) -> str:
    """The pool the step's commands queue in."""
    if step.pool:
        return step.pool
    kind = step.tool[0].kind if step.tool else "noop"
    return playbook.executor.pools.get(kind) or kind_pools.get(kind) or DEFAULT_POOL


def priority(playbook: Playbook, request_priority: int | None, command: ev.Command) -> int:
    """The command's priority: the step's plus the execution's."""
    base = request_priority if request_priority is not None else playbook.executor.priority
    return int(base) + int(command.priority)


def concurrency_key(step: Step, context: Mapping[str, Any]) -> str | None:
    """The step's concurrency key rendered with the command's context."""
    if step.concurrency_key is None:
        return None
    try:
        rendered = templates.render(step.concurrency_key, context)
    except NoetlError as exc:
        log.warning("concurrency_key of step %s did not render (%s); using its text", step.name, exc)
        return step.concurrency_key
    return str(rendered)


def needs(playbook: Playbook, step: Step, key: str | None) -> dict[str, Any] | None:
    """What a claim must check before leasing the command; None when nothing."""
    found: dict[str, Any] = {}
    if step.resources:
        found["resources"] = {name: amount for name, amount in step.resources.items() if amount > 0}
    if key is not None and step.concurrency_limit is not None:
        found["key_limit"] = step.concurrency_limit
    if playbook.executor.max_concurrent_executions is not None:
        found["gate"] = playbook.path
        found["gate_limit"] = playbook.executor.max_concurrent_executions
    if not found and key is None:
        return None
    return found
