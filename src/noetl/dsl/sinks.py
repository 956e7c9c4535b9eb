"""G0 ``save:`` and G1/G2 ``sink:`` blocks -> an ordinary postgres task (REFERENCE Appendix A, §5.9).

The canonical language has no sink keyword: data is written by a normal task. A legacy block::

    save: {storage: postgres, auth: pg, table: t, mode: upsert, key: id,
           data: {id: "{{ this.data.id }}", name: "{{ result.name }}"}}

becomes a ``postgres`` task whose ``input`` holds the column values and whose ``command`` is a
generated statement with named bind parameters (values are never spliced into the SQL):

* ``append`` (default): ``INSERT INTO t (id, name) VALUES (%(id)s, %(name)s)``;
* ``upsert``: the insert plus ``ON CONFLICT (key) DO UPDATE SET`` the other columns;
* ``update``: ``UPDATE t SET name = %(name)s WHERE id = %(id)s``;
* ``overwrite``: ``DELETE FROM t`` then the insert, in one transaction.

Where the task goes keeps the step's own result unchanged, so later ``{{ step.x }}`` still work:
for a plain step it is a new step ``<step>_save`` placed right after it, which takes over the
step's success arcs (error arcs stay on the step); for a loop step it is a second task of the
iteration's pipeline, so it runs once per element as the block did (each iteration's result then
holds both tasks' results under their names). ``this``/``result`` in the values name the step's
result.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from noetl.dsl import renames
from noetl.dsl.model import JSON

if TYPE_CHECKING:
    from noetl.dsl.normalize import Rewriter

_Map = dict[str, JSON]

_KEYS = frozenset(
    {"storage", "tool", "kind", "type", "auth", "credential", "table", "mode", "key", "data", "args", "input"}
)
_MODES = ("append", "insert", "upsert", "update", "overwrite")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_ERROR_EVENT = re.compile(r"call\.error|step\.failed|output\.status\s*==\s*['\"]error['\"]")


def split(step: JSON, rw: Rewriter) -> list[JSON]:
    """``step`` without its ``save``/``sink`` block, plus the step that does the writing (if any)."""
    if not isinstance(step, dict):
        return [step]
    keys = [key for key in ("save", "sink") if key in step]
    if not keys:
        return [step]
    name = step.get("step")
    if len(keys) > 1:
        raise rw.error("a step has both 'save' and 'sink'; keep one", step, "sink", name)
    key = keys[0]
    label = str(name) if isinstance(name, str) else "step"
    task = _task(step[key], step, key, label, rw)
    if "loop" in step:
        rw.legacy(f"'{key}' block", "a postgres task appended to the step's tool pipeline", step, key, name)
        return [_into_pipeline(step, key, task, label, rw)]
    rw.legacy(f"'{key}' block", f"a postgres step '{label}_save' after this step", step, key, name)
    return _into_step(step, key, task, label, rw)


def _task(block: JSON, step: _Map, key: str, label: str, rw: Rewriter) -> _Map:
    fields = _flatten(block, step, key, label, rw)
    kind = fields.get("storage", fields.get("tool", fields.get("kind", fields.get("type"))))
    if kind != "postgres":
        message = (
            f"'{key}' to {kind!r} cannot be rewritten automatically (only postgres can); "
            "add a task that writes the data to the step's tool pipeline instead"
        )
        raise rw.error(message, step, key, label)
    table = fields.get("table")
    if not isinstance(table, str) or not _TABLE.match(table):
        raise rw.error(f"'{key}' needs 'table' naming a table (schema.table)", step, key, label)
    values = fields.get("data", fields.get("args", fields.get("input")))
    if not isinstance(values, dict) or not values:
        raise rw.error(f"'{key}' needs 'data' (or 'args'): a map of column -> value", step, key, label)
    bad = [column for column in values if not _IDENTIFIER.match(column)]
    if bad:
        raise rw.error(f"'{key}' column name {bad[0]!r} is not a plain SQL identifier", step, key, label)
    mode = fields.get("mode", "append")
    keys = _key_columns(fields.get("key"), values, mode, step, key, label, rw)
    table_names = renames.without({"this": label, "result": label, "response": label}, rw.names - {label})
    task: _Map = {
        "name": "save",
        "kind": "postgres",
        "input": {column: renames.deep(value, table_names) for column, value in values.items()},
        "command": _statement(table, list(values), str(mode), keys),
    }
    auth = fields.get("auth", fields.get("credential"))
    if auth is not None:
        task["auth"] = auth
    rw.document.adopt_at(task, step, key)
    return task


def _flatten(block: JSON, step: _Map, key: str, label: str, rw: Rewriter) -> _Map:
    """The block's fields, with a nested ``storage``/``tool`` map (``{type: postgres, ...}``) merged in."""
    if not isinstance(block, dict):
        raise rw.error(
            f"'{key}' must be a map like {{storage: postgres, table: ..., data: {{...}}}}", step, key, label
        )
    fields: _Map = dict(block)
    for nested in ("storage", "tool"):
        inner = fields.get(nested)
        if isinstance(inner, dict):
            fields.pop(nested)
            fields.update({k: v for k, v in inner.items() if k not in fields})
    unknown = sorted(set(fields) - _KEYS)
    if unknown:
        allowed = ", ".join(sorted(_KEYS))
        raise rw.error(
            f"unknown key '{unknown[0]}' in '{key}'; allowed keys: {allowed}", block, unknown[0], label
        )
    return fields


def _key_columns(
    raw: JSON, values: _Map, mode: JSON, step: _Map, key: str, label: str, rw: Rewriter
) -> list[str]:
    if mode not in _MODES:
        raise rw.error(f"'{key}' mode {mode!r} is not one of: {', '.join(_MODES)}", step, key, label)
    keys = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    if (raw is not None and not all(isinstance(k, str) for k in keys)) or (raw is not None and not keys):
        raise rw.error(f"'{key}' key must be a column name or a list of them", step, key, label)
    if mode in ("upsert", "update") and not keys:
        raise rw.error(f"'{key}' mode '{mode}' needs 'key': the key column(s)", step, key, label)
    missing = [k for k in keys if k not in values]
    if missing:
        raise rw.error(f"'{key}' key column {missing[0]!r} is not in its 'data'", step, key, label)
    return [str(k) for k in keys]


def _statement(table: str, columns: list[str], mode: str, keys: list[str]) -> str:
    names = ", ".join(columns)
    placeholders = ", ".join(f"%({c})s" for c in columns)
    insert = f"INSERT INTO {table} ({names}) VALUES ({placeholders})"
    others = [c for c in columns if c not in keys]
    if mode == "update":
        assignments = ", ".join(f"{c} = %({c})s" for c in others)
        condition = " AND ".join(f"{k} = %({k})s" for k in keys)
        return f"UPDATE {table} SET {assignments} WHERE {condition}"
    if mode == "upsert":
        conflict = f" ON CONFLICT ({', '.join(keys)}) DO "
        if not others:
            return insert + conflict + "NOTHING"
        return insert + conflict + "UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in others)
    if mode == "overwrite":
        return f"DELETE FROM {table}; {insert}"
    return insert


def _into_pipeline(step: _Map, key: str, task: _Map, label: str, rw: Rewriter) -> _Map:
    new = rw.copy(step)
    del new[key]
    tool = new.get("tool")
    items: list[JSON] = list(tool) if isinstance(tool, list) else []
    if isinstance(tool, dict):
        items.append({"name": label, **tool})
    if isinstance(tool, list):
        task["input"] = renames.deep(task["input"], {label: "_prev"})
    items.append(task)
    rw.document.adopt(items, tool if isinstance(tool, list) else new)
    new["tool"] = items
    return new


def _into_step(step: _Map, key: str, task: _Map, label: str, rw: Rewriter) -> list[JSON]:
    save_name = f"{label}_save"
    if save_name in rw.names:
        raise rw.error(f"cannot rewrite '{key}': a step named '{save_name}' exists already", step, key, label)
    original = rw.copy(step)
    del original[key]
    router = original.pop("next", None)
    arcs = router.get("arcs") if isinstance(router, dict) else None
    arcs = arcs if isinstance(arcs, list) else []
    error_arcs = [a for a in arcs if isinstance(a, dict) and _ERROR_EVENT.search(str(a.get("when", "")))]
    success_arcs = [
        renames.deep(a, {"output.data": label}) for a in arcs if not any(a is e for e in error_arcs)
    ]
    original["next"] = {"spec": {"mode": "exclusive"}, "arcs": [*error_arcs, {"step": save_name}]}
    del task["name"]
    saver: _Map = {"step": save_name, "desc": f"writes what '{key}' of step '{label}' wrote", "tool": task}
    if success_arcs and isinstance(router, dict):
        spec = router.get("spec")
        saver["next"] = (
            {"spec": spec, "arcs": success_arcs} if isinstance(spec, dict) else {"arcs": success_arcs}
        )
    for new in (original["next"], saver):
        rw.document.adopt_at(new, step, key)
    return [original, saver]
