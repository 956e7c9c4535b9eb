"""The canonical playbook model: immutable, typed, already normalised.

Everything above the parser works with these classes only; legacy syntax never gets past
:mod:`noetl.dsl.parser`. Template strings are kept verbatim (``"{{ x }}"``) and rendered later
by :mod:`noetl.dsl.templates`.

Shape (REFERENCE §3-4, DECISIONS 1-24)::

    Playbook
      workload: {name: value}           defaults, replaced key by key by the execute payload
      workbook: {name: Task}            reusable tasks, already substituted into steps
      workflow: (Step, ...)
        Step
          tool: (Task, ...)             one task, or a pipeline (pipeline=True)
            Task(kind, name, input, config, auth, set, policy(rules), timeout, accept_status)
          loop: Loop(in_, iterator, mode, max_in_flight) | None
          admit: (AdmitRule, ...)       step.spec.policy.admit
          set:  {key: template}         applied after success, before arcs
          next: Router(mode, arcs=(Arc(step, when, set), ...)) | None
      executor: Executor(entry_step, final_step, no_next_is_error, profile)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from noetl.errors import Location

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None
"""Any JSON value. Templates are JSON strings until rendered."""

TOOL_KINDS: tuple[str, ...] = (
    "noop",
    "python",
    "http",
    "postgres",
    "duckdb",
    "shell",
    "playbook",
    "workbook",
)
"""Tool kinds this build can run. Other kinds that upstream knows are rejected with this list."""

PolicyAction = Literal["continue", "retry", "jump", "break", "fail"]
Backoff = Literal["none", "fixed", "linear", "exponential"]
LoopMode = Literal["sequential", "parallel"]
RouteMode = Literal["exclusive", "inclusive"]
FailureMode = Literal["fail_fast", "best_effort"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One task policy rule: ``when`` (None for ``else``) -> ``then.do``."""

    when: str | None
    do: PolicyAction = "continue"
    attempts: int | None = None
    backoff: Backoff = "none"
    delay: float = 0.0
    max_delay: float | None = None
    to: str | None = None
    set: Mapping[str, JSON] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Task:
    """One unit of tool work. ``config`` holds the tool-specific fields (url, code, command, ...)."""

    kind: str
    name: str
    config: Mapping[str, JSON] = field(default_factory=dict)
    input: Mapping[str, JSON] = field(default_factory=dict)
    auth: JSON = None
    set: Mapping[str, JSON] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    timeout: float | None = None
    accept_status: tuple[int, ...] = ()
    location: Location | None = None
    field_locations: Mapping[str, Location] = field(default_factory=dict, compare=False, repr=False)
    """Where each ``config`` field was written, for the tools' load-time errors."""
    spec: Mapping[str, JSON] = field(default_factory=dict)
    """Other keys of the task's ``spec`` (beyond timeout, policy, accept_status), kept verbatim."""


@dataclass(frozen=True, slots=True)
class Loop:
    """Step modifier: run the step's tool once per element of ``in_``."""

    in_: JSON
    iterator: str
    mode: LoopMode = "sequential"
    max_in_flight: int | str | None = None


@dataclass(frozen=True, slots=True)
class Arc:
    """A routing arc; ``when`` None means it always matches (for a successful step)."""

    step: str
    when: str | None = None
    set: Mapping[str, JSON] = field(default_factory=dict)
    location: Location | None = None


@dataclass(frozen=True, slots=True)
class Router:
    mode: RouteMode = "exclusive"
    arcs: tuple[Arc, ...] = ()


@dataclass(frozen=True, slots=True)
class AdmitRule:
    """Admission rule of ``step.spec.policy.admit``; ``when`` None is the ``else`` rule."""

    when: str | None
    allow: bool


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    tool: tuple[Task, ...]
    pipeline: bool = False
    desc: str | None = None
    loop: Loop | None = None
    admit: tuple[AdmitRule, ...] = ()
    set: Mapping[str, JSON] = field(default_factory=dict)
    next: Router | None = None
    failure_mode: FailureMode = "fail_fast"
    timeout: float | None = None
    priority: int = 0
    location: Location | None = None
    pool: str | None = None
    """``spec.pool``: the worker pool that runs it (None: by tool kind, see ``Executor.pools``)."""
    resources: Mapping[str, int] = field(default_factory=dict)
    """``spec.resources``: units held while it runs (worker capacity, or a named global resource)."""
    concurrency_key: str | None = None
    """``spec.concurrency_key``: a template (e.g. a tenant id); keys share workers fairly."""
    concurrency_limit: int | None = None
    """``spec.concurrency_limit``: at most this many of its commands per key in flight."""


@dataclass(frozen=True, slots=True)
class Executor:
    entry_step: str | None = None
    final_step: str | None = None
    no_next_is_error: bool = False
    profile: str = "auto"
    priority: int = 0
    """``executor.spec.priority``: added to every step's priority (the execute request may override)."""
    max_concurrent_executions: int | None = None
    """At most this many executions of the playbook run at once; the others wait in the queue."""
    pools: Mapping[str, str] = field(default_factory=dict)
    """``executor.spec.pools``: tool kind -> pool for steps without ``spec.pool``."""
    undefined: str | None = None
    """``executor.spec.undefined``: ``strict`` or ``lenient`` (DECISIONS 10); None: the deployment's."""


@dataclass(frozen=True, slots=True)
class Playbook:
    name: str
    path: str
    workflow: tuple[Step, ...]
    api_version: str = "noetl.io/v2"
    version: str | None = None
    description: str | None = None
    metadata: Mapping[str, JSON] = field(default_factory=dict)
    workload: Mapping[str, JSON] = field(default_factory=dict)
    keychain: tuple[Mapping[str, JSON], ...] = ()
    workbook: Mapping[str, Task] = field(default_factory=dict)
    executor: Executor = field(default_factory=Executor)
    source_file: str | None = None
    warnings: tuple[str, ...] = ()
    steps: Mapping[str, Step] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.steps:
            object.__setattr__(self, "steps", {s.name: s for s in self.workflow})

    @property
    def entry_step(self) -> str:
        """DECISIONS 3: ``executor.spec.entry_step``, else ``start``, else the first step."""
        if self.executor.entry_step:
            return self.executor.entry_step
        if "start" in self.steps:
            return "start"
        return self.workflow[0].name
