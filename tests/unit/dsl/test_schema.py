"""The JSON Schema and the parser share one description of the format: check both directions."""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterator

import pytest
import yaml

from noetl.dsl import model, parser, schema
from noetl.dsl.schema import SHAPES, json_schema
from noetl.errors import PlaybookError

from .test_parser import APPENDIX_B, REFERENCE_SECTION_3

# --------------------------------------------------------------------------- a tiny validator
# The subset of JSON Schema 2020-12 that json_schema() uses: $ref, type, properties, required,
# additionalProperties (bool), enum, minimum, items, minItems, anyOf, oneOf.

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def _errors(value: object, node: dict[str, object], root: dict[str, object], path: str) -> Iterator[str]:
    if "$ref" in node:
        name = str(node["$ref"]).removeprefix("#/$defs/")
        yield from _errors(value, root["$defs"][name], root, path)  # type: ignore[index]
        return
    if "anyOf" in node:
        if not any(not list(_errors(value, sub, root, path)) for sub in node["anyOf"]):  # type: ignore[attr-defined]
            yield f"{path}: matches no alternative"
        return
    json_type = node.get("type")
    if json_type is not None:
        ok = isinstance(value, _TYPES[str(json_type)]) and not (
            isinstance(value, bool) and json_type in ("integer", "number")
        )
        if not ok:
            yield f"{path}: not {json_type}"
            return
    if "enum" in node and value not in node["enum"]:  # type: ignore[operator]
        yield f"{path}: {value!r} not in enum"
    if "minimum" in node and isinstance(value, int) and value < node["minimum"]:  # type: ignore[operator]
        yield f"{path}: below minimum"
    if isinstance(value, list):
        if len(value) < int(node.get("minItems", 0)):  # type: ignore[call-overload]
            yield f"{path}: too few items"
        if "items" in node:
            for index, item in enumerate(value):
                yield from _errors(item, node["items"], root, f"{path}[{index}]")  # type: ignore[arg-type]
    if isinstance(value, dict):
        yield from _object_errors(value, node, root, path)


def _object_errors(
    value: dict[str, object], node: dict[str, object], root: dict[str, object], path: str
) -> Iterator[str]:
    properties: dict[str, dict[str, object]] = node.get("properties", {})  # type: ignore[assignment]
    for key in node.get("required", []):  # type: ignore[attr-defined]
        if key not in value:
            yield f"{path}: missing {key}"
    for key, child in value.items():
        if key in properties:
            yield from _errors(child, properties[key], root, f"{path}.{key}")
        elif node.get("additionalProperties") is False:
            yield f"{path}: unexpected key {key}"
    if "oneOf" in node:
        matching = [sub for sub in node["oneOf"] if not list(_object_errors(value, sub, root, path))]  # type: ignore[attr-defined]
        if len(matching) != 1:
            yield f"{path}: must match exactly one of oneOf"


def validate(document: object) -> list[str]:
    root = json_schema()
    return list(_errors(document, root, root, "$"))


# --------------------------------------------------------------------------- example playbooks

CANONICAL_EXAMPLES = [
    REFERENCE_SECTION_3,
    APPENDIX_B,
    """\
apiVersion: noetl.io/v10
kind: Playbook
metadata: {name: everything, tags: [a, b], owner: me}
executor: {profile: local, version: noetl-runtime/1, requires: {tools: [python]}, spec: {final_step: b, no_next_is_error: false}}
workbook:
  - {name: w, tool: {kind: python, code: "result = 1"}, assert: {expects: [x]}}
workflow:
  - step: a
    desc: one
    input: {k: 1}
    spec:
      timeout: 30s
      priority: 2
      policy:
        admit: {rules: [{when: "{{ go }}", then: {allow: true}}, {else: {then: {allow: false}}}]}
        failure: {mode: best_effort}
    loop: {in: [1, 2], iterator: x, spec: {mode: parallel, max_in_flight: "{{ n }}", policy: {exec: local}}}
    tool:
      - {name: w, kind: workbook, input: {z: 1}}
      - name: t2
        kind: http
        url: x
        timeout_seconds: 3
        output: {store: {kind: memory}}
        spec:
          timeout: {connect: 1, read: 2}
          accept_status: [404]
          policy:
            on_unmatched: fail
            rules:
              - {when: true, then: {do: retry, attempts: 2, backoff: fixed, delay: 1, max_delay: 3}}
              - {else: {then: {do: jump, to: w, set: {iter.k: 2}}}}
    set: {ctx.done: true}
    next:
      spec: {mode: inclusive, on_no_match: complete}
      arcs: [{step: b, when: "{{ a }}", set: {ctx.x: 1}}, {step: end}]
  - step: b
    tool: {kind: shell, command: "echo hi"}
""",
]


@pytest.mark.parametrize("text", CANONICAL_EXAMPLES)
def test_valid_playbooks_validate_against_the_schema(text: str) -> None:
    parser.parse(text, strict=True)
    assert validate(yaml.safe_load(text)) == []


@pytest.mark.parametrize(
    ("edit", "parser_says"),
    [
        (lambda d: d.update(extra=1), "unknown key 'extra'"),
        (lambda d: d.update(kind="Credential"), "unknown kind"),
        (lambda d: d.pop("workflow"), "needs 'workflow'"),
        (lambda d: d.update(workflow=[]), "must not be empty"),
        (lambda d: d["workflow"][0]["tool"].update(kind="ftp"), "unknown tool kind"),
        (
            lambda d: d["workflow"][0].update(
                loop={"in": [1], "iterator": "x", "spec": {"max_in_flight": 0}}
            ),
            "at least 1",
        ),
        (lambda d: d["workflow"][0].update(next={"arcs": [{"step": "end", "go": 1}]}), "unknown key 'go'"),
        (lambda d: d["workflow"][0].update(retry=3), "unknown key 'retry'"),
    ],
)
def test_invalid_playbooks_fail_both_schema_and_parser(
    edit: typing.Callable[[dict[str, typing.Any]], object], parser_says: str
) -> None:
    document = yaml.safe_load(REFERENCE_SECTION_3)
    edit(document)
    assert validate(document) != []
    with pytest.raises(PlaybookError) as caught:
        parser.parse(json.dumps(document), strict=True)
    assert parser_says in caught.value.message or "legacy" in caught.value.message


# --------------------------------------------------------------------------- structure


def test_schema_header_and_json_serialisable() -> None:
    document = json_schema()
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["$ref"] == "#/$defs/playbook"
    assert json.loads(json.dumps(document)) == document


def test_every_shape_and_every_accepted_key_is_in_the_schema() -> None:
    defs = json_schema()["$defs"]
    assert isinstance(defs, dict) and set(defs) == set(SHAPES)
    for name, shape in SHAPES.items():
        definition = defs[name]
        assert isinstance(definition, dict)
        properties = definition["properties"]
        assert isinstance(properties, dict) and set(properties) == set(shape.fields), name
        assert definition["additionalProperties"] is shape.open, name
        required = {key for key, f in shape.fields.items() if f.required}
        assert set(definition.get("required", [])) == required, name  # type: ignore[arg-type]


def test_every_reference_points_at_a_definition() -> None:
    document = json_schema()
    text = json.dumps(document)
    refs = set(re.findall(r'"\$ref": "#/\$defs/(\w+)"', text))
    assert refs and refs <= set(document["$defs"])  # type: ignore[arg-type]


def test_required_keys() -> None:
    defs = json_schema()["$defs"]
    assert defs["playbook"]["required"] == ["apiVersion", "kind", "metadata", "workflow"]  # type: ignore[index,call-overload]
    assert defs["step"]["required"] == ["step", "tool"]  # type: ignore[index,call-overload]
    assert defs["task"]["required"] == ["kind"]  # type: ignore[index,call-overload]
    assert defs["loop"]["required"] == ["in", "iterator"]  # type: ignore[index,call-overload]
    assert defs["arc"]["required"] == ["step"]  # type: ignore[index,call-overload]
    assert defs["metadata"]["required"] == ["name"]  # type: ignore[index,call-overload]


def _property(shape: str, key: str) -> dict[str, object]:
    value = json_schema()["$defs"][shape]["properties"][key]  # type: ignore[index,call-overload]
    assert isinstance(value, dict)
    return value


def test_enums_match_the_model() -> None:
    assert _property("task", "kind")["enum"] == list(model.TOOL_KINDS)
    assert _property("rule_then", "do")["enum"] == list(typing.get_args(model.PolicyAction))
    assert _property("rule_then", "backoff")["enum"] == list(typing.get_args(model.Backoff))
    assert _property("loop_spec", "mode")["enum"] == list(typing.get_args(model.LoopMode))
    assert _property("next_spec", "mode")["enum"] == list(typing.get_args(model.RouteMode))
    assert _property("failure", "mode")["enum"] == list(typing.get_args(model.FailureMode))
    assert _property("playbook", "apiVersion")["enum"] == ["noetl.io/v2", "noetl.io/v10"]
    assert _property("playbook", "kind")["enum"] == ["Playbook"]


def test_unions_and_bounds() -> None:
    tool = _property("step", "tool")
    assert tool["anyOf"] == [{"$ref": "#/$defs/task"}, {"type": "array", "items": {"$ref": "#/$defs/task"}}]
    max_in_flight = _property("loop_spec", "max_in_flight")
    assert {"type": "integer", "minimum": 1} in max_in_flight["anyOf"]  # type: ignore[operator]
    assert _property("rule_then", "attempts") == {
        "type": "integer",
        "minimum": 1,
        "description": "total runs including the first",
    }
    workflow = _property("playbook", "workflow")
    assert workflow["minItems"] == 1 and workflow["items"] == {"$ref": "#/$defs/step"}
    assert _property("loop", "in") == {"description": "list (or template rendering to one)"}


def test_rules_need_exactly_one_of_then_or_else() -> None:
    defs = json_schema()["$defs"]
    assert defs["policy_rule"]["oneOf"] == [{"required": ["then"]}, {"required": ["else"]}]  # type: ignore[index,call-overload]
    assert validate_fragment({"when": "x"}, "policy_rule") != []
    assert validate_fragment({"when": "x", "then": {"do": "fail"}}, "policy_rule") == []
    assert validate_fragment({"else": {"then": {"do": "fail"}}}, "policy_rule") == []


def validate_fragment(value: object, shape: str) -> list[str]:
    root = json_schema()
    return list(_errors(value, {"$ref": f"#/$defs/{shape}"}, root, "$"))


def test_schema_module_constants_are_the_parsers() -> None:
    assert schema.API_VERSIONS == ("noetl.io/v2", "noetl.io/v10")
    assert set(schema.SHAPES["step"].fields) == {
        "step",
        "desc",
        "spec",
        "loop",
        "tool",
        "set",
        "next",
        "input",
    }
