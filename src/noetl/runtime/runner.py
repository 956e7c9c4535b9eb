"""The task runner: runs one command - the tool(s) of one step, or of one loop iteration.

The local runtime and distributed workers both call :func:`run_command`; it knows neither. It takes
the render context the engine prepared and returns an :class:`Outcome`; it never raises for problems
of the playbook or its tools (those become ``Outcome(status="error")``), only for cancellation.

For each task of the step, in order (REFERENCE §4.2-4.6, §4.9, DECISIONS 8, 10, 12-14, 22, 24):

1. The running context is the command's context plus, so far in this command: each earlier task's
   result under its label, ``_prev``, ``_task``, ``_attempt`` and the ``set`` writes. The task's input
   is rendered (strictly: an undefined variable is an error naming it), then its fields with the input
   keys and ``input`` in scope; ``auth`` names a credential (or keychain entry) that is resolved and
   handed to the tool; a loop iteration's value is added to the input under the iterator's name.
2. The tool runs, bounded by the task's (or step's) timeout. Its outcome becomes the envelope
   ``output = {status, data, error, meta}`` plus tool details (``output.http``...), also visible as
   ``outcome`` (``outcome.result`` = data) and ``error``.
3. After a success, the task's ``set`` is applied. ``iter.x`` writes the running ``iter``; ``ctx.x``,
   ``step.x`` and bare ``x`` write the execution variables (visible at once as ``x``, ``ctx.x``,
   ``workload.x``) and are reported in :attr:`Outcome.context_updates` for the engine to record.
4. The task's policy picks a rule (:mod:`noetl.engine.policy`); its ``set`` is applied, then its action:
   ``continue``, ``retry`` (after the backoff delay, rendering everything again), ``jump``, ``break``
   or ``fail``. A task that errors with no matching rule fails the step.

The step's result is the task's result for a single task; for a pipeline ``{label: result}`` with
the fields of each task's result merged in (last task wins; a label is never hidden). In a pipeline
task's own ``set``, ``output`` is that task's result data (its policy rules see the envelope). Every
secret resolved during the command is masked (``***``) in the result, the error and the updates.
"""

from __future__ import annotations

import asyncio
import time
from collections import ChainMap
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from functools import partial
from typing import Literal, cast

from noetl.dsl import templates, views
from noetl.dsl.budget import BudgetExceeded
from noetl.dsl.model import JSON, Playbook, Rule, Step, Task
from noetl.engine import policy
from noetl.engine.policy import DEFAULT_MAX_TASK_RUNS
from noetl.errors import CredentialError, NoetlError, TemplateError, ToolError
from noetl.runtime import scripts
from noetl.runtime.credentials import Credential, CredentialStore, Keychain, Use, keychain_names
from noetl.runtime.redact import Redactor
from noetl.runtime.rendering import render_within
from noetl.tools import registry
from noetl.tools.base import Call, Services, check_config

__all__ = ["DEFAULT_MAX_TASK_RUNS", "Outcome", "run_command"]

Context = MutableMapping[str, object]
_VARIABLE_SCOPES = frozenset({"ctx", "step", "workload", "vars"})
_VARIABLE_ALIASES = ("ctx", "workload", "vars")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one command produced, after task policies."""

    status: Literal["ok", "error"]
    result: JSON
    """Single task: its result; pipeline: ``{label: result}`` of the tasks that ran (last run wins)."""
    error: dict[str, JSON] | None
    """``{kind, message, retryable, ...tool details}`` of the failing (or last continued) task."""
    context_updates: dict[str, JSON]
    """Execution variables written by ``set`` (prefix stripped), for the engine to record."""
    attempts: int
    """Total task runs, retries and jumps included."""
    duration_ms: float
    failed_task: str | None = None
    warnings: tuple[dict[str, JSON], ...] = ()
    """Undefined values rendered empty in lenient mode: ``{variable, message}`` each (DECISIONS 10)."""


async def run_command(
    playbook: Playbook,
    step_name: str,
    context: Mapping[str, object],
    *,
    execution_id: str,
    services: Services,
    credentials: CredentialStore,
    max_task_runs: int = DEFAULT_MAX_TASK_RUNS,
) -> Outcome:
    """Run the tool(s) of ``step_name`` with ``context``; see the module docstring."""
    started = time.perf_counter()
    step = playbook.steps.get(step_name)
    if step is None:
        message = f"playbook '{playbook.name}' has no step '{step_name}'"
        error: dict[str, JSON] = {"kind": "config", "message": message, "retryable": False}
        return Outcome("error", None, error, {}, 0, _ms_since(started))
    command = _Command(playbook, step, context, execution_id, services, credentials)
    try:
        await command.run(max_task_runs)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug of ours must not take the runtime down; report it as the step's error
        command.fail(_error("internal", f"task runner failed: {type(exc).__name__}: {exc}"), None)
    return command.outcome(_ms_since(started))


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _exhausted(error: dict[str, JSON] | None, task: str, attempts: int) -> dict[str, JSON]:
    """The last attempt's error, saying how many attempts ran before the retries gave up."""
    runs = f"{attempts} attempt" + ("s" if attempts != 1 else "")
    base = dict(error) if error else _error("policy", f"task '{task}': retry attempts exhausted")
    base["message"] = f"{base.get('message', '')} (gave up after {runs})"
    base["attempts"] = attempts
    return base


def _error(kind: str, message: str, retryable: bool = False) -> dict[str, JSON]:
    return {"kind": kind, "message": message, "retryable": retryable}


@dataclass(slots=True)
class _Run:
    """One run of one task: its output envelope and the result recorded for it."""

    output: dict[str, JSON]
    result: JSON
    context: Mapping[str, object]

    @property
    def ok(self) -> bool:
        return self.output["status"] == "ok"

    @property
    def error(self) -> dict[str, JSON] | None:
        return cast("dict[str, JSON] | None", self.output["error"])


class _Command:
    """The running state of one command: the context it grows, results, variable writes, secrets."""

    def __init__(
        self,
        playbook: Playbook,
        step: Step,
        context: Mapping[str, object],
        execution_id: str,
        services: Services,
        store: CredentialStore,
    ) -> None:
        self.playbook = playbook
        self.step = step
        self.execution_id = execution_id
        self.services = services
        self.store = store
        self.use = Use(execution_id, playbook.path or None, step.name)
        self.scope: Context = dict(context)
        self.scope["_prev"] = None
        self.variables: dict[str, object] | None = None  # copied from the context on first write
        self.iter: dict[str, object] | None = None
        self.results: dict[str, JSON] = {}
        self.last_result: JSON = None
        self.updates: dict[str, JSON] = {}
        self.redactor = Redactor()
        self.credentials: dict[str, Credential] = {}
        self.keychain: Keychain | None = None
        self.runs = 0
        self.status: Literal["ok", "error"] = "ok"
        self.error: dict[str, JSON] | None = None
        self.failed_task: str | None = None
        self.lenient = lenient_templates(playbook, services)
        self.warnings: list[dict[str, JSON]] = []
        self.effects = False
        """A task other than a sub-playbook call ran: running the command again would repeat it."""

    # ---- control flow ------------------------------------------------------------------------------

    async def run(self, max_task_runs: int) -> None:
        tasks = self.step.tool
        positions = {task.name: index for index, task in enumerate(tasks)}
        index, attempt = 0, 1
        while index < len(tasks):
            task = tasks[index]
            if self.runs >= max_task_runs:
                message = (
                    f"step '{self.step.name}' reached the limit of {max_task_runs} task runs per command "
                    f"(at task '{task.name}'); a jump or retry loop did not end"
                )
                return self.fail(_error("policy", message), task.name)
            self.runs += 1
            run = await self.run_task(task, attempt)
            rule = policy.choose_rule(task.rules, partial(self.holds, context=run.context))
            action = rule.do if rule is not None else policy.default_action(run.ok)
            if rule is not None and rule.set and not self.apply_rule_set(rule, task, run):
                return None
            if action == "retry":
                assert rule is not None  # the default action is never retry
                if attempt < policy.retry_attempts(rule):
                    await asyncio.sleep(policy.retry_delay(rule, attempt))
                    attempt += 1
                    continue
                return self.fail(_exhausted(run.error, task.name, attempt), task.name)
            attempt = 1
            if action == "fail":
                failed = _error("policy", f"task '{task.name}' failed by policy rule")
                return self.fail(run.error or failed, task.name)
            if action in ("continue", "break") and not run.ok:
                self.error = run.error  # the step succeeds, and its arcs still see the error
            if action == "break":
                return None
            if action == "jump":
                assert rule is not None
                target = positions.get(rule.to or "")
                if target is None:
                    names = ", ".join(positions)
                    message = (
                        f"jump target '{rule.to}' is not a task of step '{self.step.name}'; tasks: {names}"
                    )
                    return self.fail(_error("policy", message), task.name)
                index = target
            else:
                index += 1
        return None

    def apply_rule_set(self, rule: Rule, task: Task, run: _Run) -> bool:
        """Apply ``then.set`` before the rule's action; False (and the step failed) if it cannot render."""
        try:
            self.apply_set(rule.set, run.context, f"policy set of task '{task.name}'")
        except TemplateError as exc:
            self.fail(_template_error(exc), task.name)
            return False
        return True

    def fail(self, error: dict[str, JSON], task: str | None) -> None:
        self.status = "error"
        self.error = error
        self.failed_task = task

    def holds(self, when: str, context: Mapping[str, object]) -> bool:
        """A rule's condition; one that cannot be rendered (undefined field...) is false."""
        try:
            return templates.truthy(templates.render(when, context))
        except TemplateError:
            return False

    def outcome(self, duration_ms: float) -> Outcome:
        result: JSON = _pipeline_result(self.results) if self.step.pipeline else self.last_result
        error, updates = self.error, self.updates
        if self.redactor:
            result = self.redactor.redact(result)
            error = cast("dict[str, JSON] | None", self.redactor.redact(error))
            updates = cast("dict[str, JSON]", self.redactor.redact(updates))
        return Outcome(
            self.status,
            result,
            error,
            updates,
            self.runs,
            duration_ms,
            self.failed_task,
            tuple(self.warnings),
        )

    # ---- one task run ------------------------------------------------------------------------------

    async def run_task(self, task: Task, attempt: int) -> _Run:
        started = time.perf_counter()
        self.scope["_task"] = task.name
        self.scope["_attempt"] = attempt
        context: Mapping[str, object] = self.scope
        data: JSON = None
        error: dict[str, JSON] | None = None
        details: Mapping[str, object] = {}
        timeout = task.timeout if task.timeout is not None else self.step.timeout
        deadline = None if timeout is None else time.monotonic() + timeout  # covers rendering too
        where = f"step '{self.step.name}': {self._where(task)}"
        try:
            await self.prepare_keychain(task)
            arguments = await render_within(partial(self.render_input, task), deadline, f"{where}input")
            if arguments:
                context = ChainMap({**arguments, "input": arguments}, self.scope)
            config = await scripts.resolve(
                task.kind,
                await render_within(
                    partial(self.render_config, task, context), deadline, f"{where}rendering the fields"
                ),
                self.services,
                self.step.name,
            )
            credential = await self.credential(task, context)
            data = await self.call_tool(task, config, arguments, credential, deadline)
        except asyncio.CancelledError:
            raise
        except ToolError as exc:
            data = cast(JSON, exc.data)
            details = exc.details
            error = {**cast("dict[str, JSON]", details), **_error(exc.kind, exc.message, exc.retryable)}
        except TemplateError as exc:
            error = _template_error(exc, self.step.name if isinstance(exc, BudgetExceeded) else None)
        except NoetlError as exc:
            error = _error(exc.kind, exc.message)
        except Exception as exc:  # a tool or store bug: still an error of this task, not of the runtime
            error = _error("internal", f"{type(exc).__name__}: {exc}")
        output = _envelope(task, data, error, details, attempt, _ms_since(started))
        run = _Run(output, _task_result(data, error), context)
        self.record(task, run)
        if run.ok and task.set:
            try:
                self.apply_set(task.set, self._task_set_context(run, context), f"set of task '{task.name}'")
            except TemplateError as exc:
                run.output = {**output, "status": "error", "error": _template_error(exc)}
                self.publish(run.output)
        return run

    def _task_set_context(self, run: _Run, context: Mapping[str, object]) -> Mapping[str, object]:
        """A pipeline task's own ``set`` sees ``output`` as its result data, as upstream's does."""
        if not self.step.pipeline:
            return context
        return ChainMap({"output": views.task_output_view(run.output)}, cast(Context, context))

    def record(self, task: Task, run: _Run) -> None:
        """Make the run's result and envelope visible to what follows (set, policy, later tasks)."""
        self.results[task.name] = run.result
        self.last_result = run.result
        view = templates.result_view(run.result)
        self.scope[task.name] = view
        self.scope["_prev"] = view
        self.publish(run.output)

    def publish(self, output: dict[str, JSON]) -> None:
        self.scope["output"] = output
        self.scope["outcome"] = {**output, "result": output["data"]}
        self.scope["error"] = output["error"]

    def render_input(self, task: Task) -> dict[str, JSON]:
        rendered = self.render_fields(task.input, self.scope, "input", self._where(task))
        loop = self.step.loop
        if loop is not None and loop.iterator not in rendered:
            value = self._iteration_value(loop.iterator)
            if value is not _ABSENT:
                rendered[loop.iterator] = cast(JSON, value)
        return rendered

    def _iteration_value(self, iterator: str) -> object:
        running_iter = self.scope.get("iter")
        if isinstance(running_iter, Mapping) and iterator in running_iter:
            return running_iter[iterator]
        return self.scope.get(iterator, _ABSENT)

    def render_config(self, task: Task, context: Mapping[str, object]) -> dict[str, JSON]:
        config = self.render_fields(task.config, context, "field", self._where(task))
        if task.accept_status and task.kind == "http" and "accept_status" not in config:
            config["accept_status"] = list(task.accept_status)
        return config

    def _where(self, task: Task) -> str:
        return f"task '{task.name}' " if self.step.pipeline else ""

    async def call_tool(
        self,
        task: Task,
        config: dict[str, JSON],
        arguments: dict[str, JSON],
        credential: Credential | None,
        deadline: float | None = None,
    ) -> JSON:
        tool = registry.get(task.kind)
        check_config(tool, config, step=self.step.name, task=task.name)
        if task.kind == "playbook" and self.redactor:
            # A sub-playbook's workload is stored (its execution, events, commands, API answers):
            # secrets do not cross into it by value (the child names its own credentials).
            config = cast("dict[str, JSON]", self.redactor.redact(config))
            arguments = cast("dict[str, JSON]", self.redactor.redact(arguments))
        timeout = task.timeout if task.timeout is not None else self.step.timeout
        call = Call(
            self.execution_id,
            self.step.name,
            task.name,
            task.kind,
            config,
            arguments,
            credential,
            timeout,
            self.services,
            self.playbook.path or "",
            resumable=not self.effects,
            context=_plain_context(self.scope) if _wants_context(task, config) else None,
        )
        if task.kind not in REPLAYABLE_KINDS:
            self.effects = True
        if timeout is None:
            return await tool.run(call)
        remaining = timeout if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            return await asyncio.wait_for(tool.run(call), remaining)
        except TimeoutError:
            raise ToolError(
                f"{self._where(task)}timed out after {timeout:g} s", error_kind="timeout", retryable=True
            ) from None

    # ---- credentials and keychain ------------------------------------------------------------------

    async def credential(self, task: Task, context: Mapping[str, object]) -> Credential | None:
        """The credential ``auth`` names (a credential or a keychain entry), resolved once per command."""
        if task.auth is None:
            return None
        try:
            reference = templates.render(task.auth, context)
        except TemplateError as exc:
            raise TemplateError(f"{self._where(task)}auth: {exc.message}", variable=exc.variable) from None
        name = _credential_name(reference, task.name)
        if name is None:
            return None
        found = self.credentials.get(name)
        if found is None:
            keychain = self._keychain()
            if keychain is not None and name in keychain:
                found = await keychain.credential(name, self.scope)
            else:
                found = await self.store.get(name, self.use)
            self.credentials[name] = found
            self.redactor.add_data(found.get("data"))
        return found if "name" in found else {**found, "name": name}  # tools name it in errors

    def _keychain(self) -> Keychain | None:
        if self.keychain is None and self.playbook.keychain:
            self.keychain = Keychain(self.playbook.keychain, self.store, self.use)
            self.scope["keychain"] = self.keychain.resolved
        return self.keychain

    async def prepare_keychain(self, task: Task) -> None:
        """Resolve the keychain entries the task's templates read, before anything is rendered."""
        keychain = self._keychain()
        if keychain is None:
            return
        rules = [(rule.when, rule.set) for rule in task.rules]
        names = keychain_names((task.config, task.input, task.auth, task.set, rules), keychain.names())
        missing = [name for name in names if name not in keychain.credentials]
        if not missing:
            return
        await keychain.resolve(missing, self.scope)
        for credential in keychain.credentials.values():
            self.redactor.add_data(credential.get("data"))

    def render_fields(
        self, fields: Mapping[str, JSON], context: Mapping[str, object], noun: str, where: str
    ) -> dict[str, JSON]:
        """Each value of ``fields`` rendered strictly; a failure names the field it happened in. In
        lenient mode a value that fails only for an undefined name renders with it empty instead, and
        a warning naming the variable is recorded (DECISIONS 10)."""
        try:
            return _render_fields(fields, context, noun, where)
        except TemplateError as exc:
            if not self.lenient or exc.variable is None:
                raise
        rendered: dict[str, JSON] = {}
        for key, value in fields.items():
            try:
                rendered[key] = cast(JSON, templates.render(value, context))
            except TemplateError as exc:
                if exc.variable is None:
                    raise TemplateError(f"{where}{noun} '{key}': {exc.message}") from None
                rendered[key] = cast(JSON, templates.render(value, context, strict=False))
                message = f"{where}{noun} '{key}': {exc.message}; rendered empty (lenient templates)"
                self.warnings.append({"variable": exc.variable, "message": message})
        return rendered

    # ---- set: variable scopes ----------------------------------------------------------------------

    def apply_set(self, assignments: Mapping[str, JSON], context: Mapping[str, object], what: str) -> None:
        """Render every value first (all see the same context), then write them by scope prefix."""
        values = self.render_fields(assignments, context, "key", f"{what}: ")
        for key, value in values.items():
            scope, _, name = key.partition(".")
            if name and scope == "iter":
                self._iter()[name] = value
            elif name and scope in _VARIABLE_SCOPES:
                self._write_variable(name, value)
            else:  # bare keys, and unknown prefixes kept verbatim (REFERENCE §4.9)
                self._write_variable(key, value)

    def _iter(self) -> dict[str, object]:
        if self.iter is None:
            current = self.scope.get("iter")
            self.iter = dict(current) if isinstance(current, Mapping) else {}
            self.scope["iter"] = self.iter
        return self.iter

    def _write_variable(self, name: str, value: JSON) -> None:
        if self.variables is None:
            current = self.scope.get("ctx")
            self.variables = dict(current) if isinstance(current, Mapping) else {}
            for alias in _VARIABLE_ALIASES:
                self.scope[alias] = self.variables
        self.variables[name] = value
        self.scope[name] = value
        self.updates[name] = value


_ABSENT = object()
REPLAYABLE_KINDS = frozenset({"playbook", "noop"})
"""Tool kinds a command may run again at no cost: a sub-playbook call attaches to its child, and
``noop`` does nothing (its ``set`` is rendered again, from the same values)."""


TEMPLATE_UNDEFINED_KEY = "template_undefined"
"""``Services.extras`` key: the deployment's default for undefined values, ``strict`` or ``lenient``."""


def lenient_templates(playbook: Playbook, services: Services) -> bool:
    """The playbook's ``executor.spec.undefined`` if set, else the deployment's setting."""
    mode = playbook.executor.undefined or services.extras.get(TEMPLATE_UNDEFINED_KEY)
    return mode == "lenient"


def _render_fields(
    fields: Mapping[str, JSON], context: Mapping[str, object], noun: str, where: str
) -> dict[str, JSON]:
    """Each value of ``fields`` rendered strictly; a failure names the field it happened in."""
    rendered: dict[str, JSON] = {}
    for key, value in fields.items():
        try:
            rendered[key] = cast(JSON, templates.render(value, context))
        except TemplateError as exc:  # the same class: a budget error stays one
            raise type(exc)(f"{where}{noun} '{key}': {exc.message}", variable=exc.variable) from None
    return rendered


def _template_error(exc: TemplateError, step: str | None = None) -> dict[str, JSON]:
    error = _error("template", f"step '{step}': {exc.message}" if step else exc.message)
    if exc.variable is not None:
        error["variable"] = exc.variable
    return error


def _credential_name(reference: object, task: str) -> str | None:
    """``auth`` rendered: a credential name, or a map ``{source: credential, key: name}``."""
    if reference is None or reference == "":
        return None
    if isinstance(reference, str):
        return reference
    if isinstance(reference, Mapping):
        source = reference.get("source", "credential")
        name = reference.get("key", reference.get("credential", reference.get("name")))
        if source == "credential" and isinstance(name, str) and name:
            return name
        if source != "credential":
            raise CredentialError(
                f"task '{task}': auth source '{source}' is not supported by this runtime; "
                "use a credential name or {source: credential, key: <name>}"
            )
    raise CredentialError(
        f"task '{task}': auth must be a credential name or a map {{source: credential, key: <name>}}"
    )


def _wants_context(task: Task, config: Mapping[str, JSON]) -> bool:
    """Only python code that names ``context`` gets the (copied) render context."""
    code = config.get("code")
    return task.kind == "python" and isinstance(code, str) and "context" in code


def _plain_context(scope: Mapping[str, object]) -> dict[str, JSON]:
    """The render context as JSON: step results, variables, workload; internal and non-JSON names left out."""
    plain: dict[str, JSON] = {}
    for key, value in scope.items():
        if key.startswith("_") or key == "keychain":
            continue
        try:
            plain[key] = cast(JSON, views.plain(value))
        except (TypeError, TemplateError):
            continue
    return plain


def _pipeline_result(results: Mapping[str, JSON]) -> JSON:
    """A pipeline step's result (DECISIONS 8): each task's result under its name, and the fields of
    each map result merged in task order (the last task wins), never hiding a task's name."""
    merged: dict[str, JSON] = dict(results)
    for value in results.values():
        if isinstance(value, dict):
            for key, field in value.items():
                if key not in results:
                    merged[key] = field
    return merged


def _task_result(data: JSON, error: dict[str, JSON] | None) -> JSON:
    """The result a task leaves behind: its data, or for an error without data the error itself."""
    if error is None or data is not None:
        return data
    return {"status": "error", "error": error}


def _envelope(
    task: Task,
    data: JSON,
    error: dict[str, JSON] | None,
    details: Mapping[str, object],
    attempt: int,
    duration_ms: float,
) -> dict[str, JSON]:
    """The ``output`` envelope of DECISIONS 14, with tool details at the top (``output.http``...)."""
    output: dict[str, JSON] = {
        "status": "ok" if error is None else "error",
        "data": data,
        "error": error,
        "meta": {"attempt": attempt, "duration_ms": round(duration_ms, 3)},
    }
    for key, value in details.items():
        output.setdefault(key, cast(JSON, value))
    if error is None and isinstance(data, dict):
        if task.kind == "http":
            output["http"] = {"status": data.get("status_code"), "headers": data.get("headers")}
        elif task.kind == "shell":
            output["shell"] = {"exit_code": data.get("exit_code")}
    return output
