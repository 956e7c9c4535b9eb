"""Template rendering: native types, filters, truthiness, undefined rules, sandbox, result views, cache.

Pins REFERENCE §4.14-4.15 and DECISIONS 7, 9, 10 and 19.
"""

from __future__ import annotations

import json

import pytest

from noetl.dsl import templates
from noetl.dsl.templates import TemplateError, evaluate, is_template, render, result_view, truthy
from noetl.errors import NoetlError

LOOP_RESULT = {"results": [{"v": 1}, {"v": 2}, {"v": 3}], "stats": {"total": 3, "succeeded": 3, "failed": 0}}


def context() -> dict[str, object]:
    return {
        "zip": "007",
        "n": 5,
        "price": 2.5,
        "flag": False,
        "nothing": None,
        "items": [1, 2, 3],
        "cfg": {"a": 1, "b": {"c": "deep"}},
        "page": {"items": [10, 20], "count": 2},
        "step_a": result_view({"field": 41, "nested": {"x": 1}}),
        "http": result_view({"status_code": 200, "headers": {}, "data": {"id": 7}}),
        "loop_step": result_view(LOOP_RESULT),
    }


# --- DECISIONS 9: type preservation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ items }}", [1, 2, 3]),
        ("{{ cfg }}", {"a": 1, "b": {"c": "deep"}}),
        ("{{ n }}", 5),
        ("{{ price }}", 2.5),
        ("{{ flag }}", False),
        ("{{ nothing }}", None),
        ("{{ zip }}", "007"),
        ("{{ n + 1 }}", 6),
        ("{{ n > 3 }}", True),
        ("{{ [n, zip] }}", [5, "007"]),
        ("{{ {'k': n} }}", {"k": 5}),
        ("{{ (1, 2) }}", [1, 2]),
        ("  {{ items }}\n", [1, 2, 3]),
        ("{{- items -}}", [1, 2, 3]),
        ("{{ cfg.b.c }}", "deep"),
        ("{{ cfg['b']['c'] }}", "deep"),
        ("{{ items[0] }}", 1),
    ],
)
def test_single_expression_keeps_native_type(template: str, expected: object) -> None:
    value = evaluate(template, context())
    assert value == expected
    assert type(value) is type(expected)


def test_a_numeric_looking_string_stays_a_string() -> None:
    assert evaluate("{{ zip }}", {"zip": "007"}) == "007"
    assert evaluate("{{ j }}", {"j": '{"a": 1}'}) == '{"a": 1}'


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("n={{ n }}", "n=5"),
        ("{{ n }}{{ n }}", "55"),
        ("{{ n }} and {{ zip }}", "5 and 007"),
        ("{% if n > 3 %}big{% else %}small{% endif %}", "big"),
        ("{% for i in items %}{{ i }},{% endfor %}", "1,2,3,"),
        ("select *\nfrom t where id = {{ n }}\n", "select *\nfrom t where id = 5\n"),
        ("{{ flag }}!", "False!"),
    ],
)
def test_mixed_text_renders_a_string(template: str, expected: str) -> None:
    assert evaluate(template, context()) == expected


def test_a_value_taken_from_the_context_is_not_copied() -> None:
    rows = [{"id": i} for i in range(1000)]
    assert evaluate("{{ rows }}", {"rows": rows}) is rows
    assert evaluate("{{ s.data.rows }}", {"s": result_view({"rows": rows})}) is rows


# --- render walks JSON-like values -----------------------------------------------------------------


def test_render_recurses_into_dicts_and_lists() -> None:
    value = {
        "url": "http://h/{{ n }}",
        "body": {"ids": "{{ items }}", "list": ["{{ zip }}", "plain", 3, {"deep": "{{ cfg.a }}"}]},
        "method": "GET",
    }
    assert render(value, context()) == {
        "url": "http://h/5",
        "body": {"ids": [1, 2, 3], "list": ["007", "plain", 3, {"deep": 1}]},
        "method": "GET",
    }


def test_render_returns_untouched_values_and_containers_as_they_are() -> None:
    headers = {"accept": "json"}
    untouched = ["a", 1, None, True, {"b": [2.5]}]
    value = {"headers": headers, "url": "{{ n }}", "list": untouched}
    rendered = render(value, context())
    assert rendered is not value and rendered == {"headers": headers, "url": 5, "list": untouched}
    assert rendered["headers"] is headers and rendered["list"] is untouched  # type: ignore[index]
    assert render(untouched, context()) is untouched
    assert render("no template here", {}) == "no template here"
    for scalar in (7, 1.5, True, None):
        assert render(scalar, {}) is scalar
    assert value["url"] == "{{ n }}"  # the input is never modified


def test_is_template() -> None:
    assert is_template("{{ x }}") and is_template("a {% if x %}b{% endif %}")
    assert not is_template("plain") and not is_template("{ x }") and not is_template(7)
    assert not is_template(["{{ x }}"])


# --- filters (REFERENCE §4.15) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ cfg | tojson }}", '{"a":1,"b":{"c":"deep"}}'),
        ("{{ '<a&b>' | tojson }}", '"<a&b>"'),
        ("{{ 'é' | tojson }}", '"é"'),
        ("{{ {'a': [1]} | tojson(indent=2) }}", '{\n  "a": [\n    1\n  ]\n}'),
        ("{{ '{\"a\": [1, 2]}' | fromjson }}", {"a": [1, 2]}),
        ("{{ cfg | fromjson }}", {"a": 1, "b": {"c": "deep"}}),
        ("{{ 'hi' | b64encode }}", "aGk="),
        ("{{ 'aGk=' | b64decode }}", "hi"),
        ("{{ 'ünï' | b64encode | b64decode }}", "ünï"),
        ("{{ '42' | int }}", 42),
        ("{{ '2.5' | float }}", 2.5),
        ("{{ n | string }}", "5"),
        ("{{ undefined_thing | default('d') }}", "d"),
        ("{{ cfg.zzz | default(7) }}", 7),
        ("{{ 'AbC' | lower }}", "abc"),
        ("{{ 'AbC' | upper }}", "ABC"),
        ("{{ '  x  ' | trim }}", "x"),
        ("{{ 'a b  c' | split }}", ["a", "b", "c"]),
        ("{{ 'a,b,,c' | split(',') }}", ["a", "b", "", "c"]),
        ("{{ 'a,b,c' | split(',', 1) }}", ["a", "b,c"]),
        ("{{ items | join('-') }}", "1-2-3"),
        ("{{ items | first }}", 1),
        ("{{ items | last }}", 3),
        ("{{ items | length }}", 3),
        ("{{ cfg | keys }}", ["a", "b"]),
        ("{{ cfg | values }}", [1, {"c": "deep"}]),
        ("{{ cfg | items }}", [["a", 1], ["b", {"c": "deep"}]]),
        ("{{ cfg | get('a') }}", 1),
        ("{{ cfg | get('zzz', 'fallback') }}", "fallback"),
        ("{{ cfg | get('zzz') }}", None),
        ("{{ items | get(1) }}", 2),
        ("{{ items | get(9, 'none') }}", "none"),
        ("{{ nothing | get('a', 3) }}", 3),
        ("{{ items | safe }}", [1, 2, 3]),
        ("{{ 'x' | safe }}", "x"),
        ("{{ items | map('string') | list }}", ["1", "2", "3"]),
        ("{{ items | sum }}", 6),
        ("{{ cfg | dictsort }}", [["a", 1], ["b", {"c": "deep"}]]),
    ],
)
def test_filters(template: str, expected: object) -> None:
    value = evaluate(template, context())
    assert value == expected
    assert type(value) is type(expected)


def test_items_filter_in_a_for_loop() -> None:
    assert evaluate("{% for k, v in cfg | items %}{{ k }}{% endfor %}", context()) == "ab"


def test_extra_filters_are_listed() -> None:
    extra = {
        "tojson",
        "fromjson",
        "b64encode",
        "b64decode",
        "split",
        "keys",
        "values",
        "items",
        "get",
        "safe",
    }
    assert extra <= set(templates.filters)


@pytest.mark.parametrize(
    "template",
    ["{{ 'not json' | fromjson }}", "{{ '***' | b64decode }}", "{{ 5 | split }}", "{{ 5 | keys }}"],
)
def test_filter_failures_are_template_errors(template: str) -> None:
    with pytest.raises(TemplateError, match="failed"):
        evaluate(template, context())


# --- DECISIONS 10: truthiness ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, False, 0, 0.0, [], {}, "", "  ", "false", "False", "FALSE", " false ", "0", "no", "No", "none",
     "None", "null", "NULL", result_view({})],
)  # fmt: skip
def test_falsy_values(value: object) -> None:
    assert truthy(value) is False


@pytest.mark.parametrize(
    "value",
    [True, 1, -1, 0.5, [0], {"a": None}, "true", "yes", "1", "x", "0.0", "off", result_view({"a": 1})],
)
def test_truthy_values(value: object) -> None:
    assert truthy(value) is True


# --- DECISIONS 10: strict and lenient undefined ------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "variable"),
    [
        ("{{ foo }}", "foo"),
        ("{{ foo.bar }}", "foo"),
        ("x={{ foo }}", "foo"),
        ("{{ foo + 1 }}", "foo"),
        ("{{ [1, foo] }}", "foo"),
        ("{% for x in foo %}{{ x }}{% endfor %}", "foo"),
        ("{{ foo.a.b | length }}", "foo"),
        ("{{ foo.a == 1 }}", "foo"),
        ("{{ foo | tojson }}", "foo"),
    ],
)
def test_strict_undefined_variable_is_an_error_naming_it(template: str, variable: str) -> None:
    with pytest.raises(TemplateError) as caught:
        evaluate(template, context())
    assert caught.value.variable == variable
    assert f"undefined variable '{variable}'" in str(caught.value)
    assert template.strip() in str(caught.value)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{% if foo %}a{% else %}b{% endif %}", "b"),
        ("{{ foo.a.b | default('') }}", ""),
        ("{{ step_a.nested.nope.deeper | default(7) }}", 7),
        ("{{ foo if foo else step_a.field }}", 41),
        ("{{ foo.bar is defined }}", False),
        ("{{ step_a.nested.nope is not defined }}", True),
        ("{{ not foo.bar }}", True),
    ],
)
def test_strict_undefined_chains_through_tests_filters_and_conditions(
    template: str, expected: object
) -> None:
    """DECISIONS 10 (amended): undefined values chain as upstream's minijinja ones do."""
    assert evaluate(template, context()) == expected


def test_error_message_format() -> None:
    with pytest.raises(TemplateError) as caught:
        evaluate("{{ foo.bar }}", {})
    assert str(caught.value) == "undefined variable 'foo' in template '{{ foo.bar }}'"
    assert isinstance(caught.value, NoetlError) and caught.value.to_dict()["kind"] == "template"


@pytest.mark.parametrize(
    ("template", "variable", "detail"),
    [
        ("{{ step_a.missing }}", "step_a.missing", "its fields are: field, nested"),
        ("{{ step_a.data.missing }}", "step_a.data.missing", "its fields are: field, nested"),
        ("{{ step_a.nested.nope }}", "step_a.nested.nope", "its fields are: x"),
        ("id={{ cfg.b['zz'] }}", "cfg.b.zz", "its fields are: c"),
        ("{{ items[7] }}", "items[7]", "is a list of 3 items"),
        ("{{ loop_step.stats.nope }}", "loop_step.stats.nope", "total, succeeded, failed"),
        ("{% for r in loop_step %}{{ r.w }}{% endfor %}", "r.w", "its fields are: v"),
        ("{{ zip.nope }}", "zip.nope", "has type str"),
    ],
)
def test_strict_undefined_field_of_a_defined_value_names_the_path(
    template: str, variable: str, detail: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        evaluate(template, context())
    assert caught.value.variable == variable
    assert f"undefined variable '{variable}'" in str(caught.value)
    assert detail in str(caught.value)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ foo }}", None),
        ("{{ foo.bar.baz }}", None),
        ("{{ step_a.missing }}", None),
        ("{{ items[9] }}", None),
        ("{{ [1, foo] }}", [1, None]),
        ("{{ foo | tojson }}", "null"),
        ("x={{ foo }}{{ step_a.missing.deeper }}.", "x=."),
        ("{% if foo %}yes{% else %}no{% endif %}", "no"),
        ("{% for x in foo %}{{ x }}{% endfor %}!", "!"),
    ],
)
def test_lenient_undefined_renders_empty_or_null(template: str, expected: object) -> None:
    assert evaluate(template, context(), strict=False) == expected


def test_lenient_render_walks_values_too() -> None:
    assert render({"a": "{{ foo }}", "b": ["x{{ foo }}"]}, {}, strict=False) == {"a": None, "b": ["x"]}


def test_defined_tests_and_default_work_in_strict_mode() -> None:
    assert evaluate("{{ foo is defined }}", {}) is False
    assert evaluate("{{ step_a.missing is defined }}", context()) is False
    assert evaluate("{{ foo | default('x') }}", {}) == "x"
    assert evaluate("{{ n if n is defined else 0 }}", {}) == 0
    assert evaluate("{{ 'a' if false }}", {}) is None  # Jinja's implicit else is empty in every mode


# --- failures inside templates and the sandbox --------------------------------------------------------


def test_syntax_error_names_the_template_and_the_reason() -> None:
    with pytest.raises(TemplateError) as caught:
        evaluate("{{ n + }}", {})
    message = str(caught.value)
    assert "syntax error" in message and "'{{ n + }}'" in message and "unexpected" in message


def test_syntax_error_in_a_multiline_template_gives_the_line() -> None:
    with pytest.raises(TemplateError, match=r"\(line 2\): .*endif"):
        evaluate("select 1\n{% if x %}\n", {"x": True})


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ 1 / 0 }}", "ZeroDivisionError: division by zero"),
        ("{{ 'a' + 1 }}", "TypeError"),
        ("{{ range }}", "not a JSON value"),
    ],
)
def test_exceptions_inside_templates_become_template_errors(template: str, reason: str) -> None:
    with pytest.raises(TemplateError, match=reason) as caught:
        evaluate(template, {})
    assert template in str(caught.value)


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "x{{ cfg.__class__ }}",
        "{{ items.append(4) }}",
        "{{ cfg.update({'a': 2}) }}",
        "{{ cfg.pop('a') }}",
    ],
)
def test_the_sandbox_blocks_internals_and_mutation(template: str, strict: bool) -> None:
    ctx = context()
    with pytest.raises(TemplateError):
        evaluate(template, ctx, strict=strict)
    assert ctx["items"] == [1, 2, 3] and ctx["cfg"] == {"a": 1, "b": {"c": "deep"}}


def test_view_internals_are_not_reachable() -> None:
    for template in ("{{ step_a._value }}", "{{ step_a.__class__ }}", "{{ step_a | attr('_value') }}"):
        with pytest.raises(TemplateError):
            evaluate(template, context())


def test_no_clock_and_no_randomness() -> None:
    for template in ("{{ lipsum() }}", "{{ now() }}", "{{ items | random }}"):
        with pytest.raises(TemplateError):
            evaluate(template, context())


# --- dict field access --------------------------------------------------------------------------------


def test_dict_keys_win_over_dict_methods() -> None:
    assert evaluate("{{ page.items }}", context()) == [10, 20]
    assert evaluate("{{ page.items | length }}", context()) == 2
    assert evaluate("{% for k, v in cfg.items() %}{{ k }}{% endfor %}", context()) == "ab"
    assert evaluate("{{ cfg.get('a') }}", context()) == 1


# --- DECISIONS 7: step result views -------------------------------------------------------------------


def test_step_field_data_field_and_result_field_are_the_same() -> None:
    ctx = context()
    for template in ("{{ step_a.field }}", "{{ step_a.data.field }}", "{{ step_a.result.field }}",
                     "{{ step_a['field'] }}", "{{ step_a['data']['field'] }}", "{{ step_a.data.result.field }}"):  # fmt: skip
        assert evaluate(template, ctx) == 41, template


def test_whole_step_result_is_the_plain_stored_value() -> None:
    stored = {"field": 41, "nested": {"x": 1}}
    ctx = {"s": result_view(stored)}
    for template in ("{{ s }}", "{{ s.data }}", "{{ s.result }}"):
        value = evaluate(template, ctx)
        assert type(value) is dict and value == stored
    assert evaluate("{{ [s] }}", ctx) == [stored] and type(evaluate("{{ [s] }}", ctx)[0]) is dict  # type: ignore[index]
    assert evaluate("{{ {'k': s.data} }}", ctx) == {"k": stored}
    assert json.loads(evaluate("{{ s | tojson }}", ctx)) == stored  # type: ignore[arg-type]
    assert evaluate("{{ s | tojson }}", ctx) == json.dumps(stored, separators=(",", ":"))


def test_a_result_with_its_own_data_key_keeps_it() -> None:
    ctx = context()
    assert evaluate("{{ http.data.id }}", ctx) == 7
    assert evaluate("{{ http.data }}", ctx) == {"id": 7}
    assert evaluate("{{ http.result.status_code }}", ctx) == 200
    assert evaluate("{{ http.result.data.id }}", ctx) == 7
    assert evaluate("{{ http.status_code }}", ctx) == 200


def test_a_result_with_its_own_result_key_keeps_it() -> None:
    ctx = {"s": result_view({"result": 5, "x": 1})}
    assert evaluate("{{ s.result }}", ctx) == 5
    assert evaluate("{{ s.data.x }}", ctx) == 1


def test_step_view_behaves_as_a_mapping_of_its_stored_keys() -> None:
    ctx = context()
    assert evaluate("{{ step_a | length }}", ctx) == 2
    assert evaluate("{{ step_a | keys }}", ctx) == ["field", "nested"]
    assert evaluate("{% for k in step_a %}{{ k }};{% endfor %}", ctx) == "field;nested;"
    assert evaluate("{{ 'field' in step_a }}", ctx) is True
    assert evaluate("{{ 'data' in step_a }}", ctx) is False  # the alias is not a stored key
    assert evaluate("{{ step_a is mapping }}", ctx) is True
    assert evaluate("{{ step_a | get('field') }}", ctx) == 41
    assert evaluate("{{ step_a == {'field': 41, 'nested': {'x': 1}} }}", ctx) is True
    assert evaluate("s={{ step_a }}", ctx) == "s={'field': 41, 'nested': {'x': 1}}"


def test_result_view_leaves_other_values_alone() -> None:
    for value in (None, 3, "text", [1, 2], True):
        assert result_view(value) is value
    view = result_view({"a": 1})
    assert result_view(view) is view


# --- DECISIONS 19: loop aggregates --------------------------------------------------------------------


def test_loop_result_reads_as_its_results() -> None:
    ctx = context()
    assert evaluate("{{ loop_step.data }}", ctx) == LOOP_RESULT["results"]
    assert evaluate("{{ loop_step.results }}", ctx) == LOOP_RESULT["results"]
    assert evaluate("{{ loop_step | length }}", ctx) == 3
    assert evaluate("{% for r in loop_step %}{{ r.v }}{% endfor %}", ctx) == "123"
    assert evaluate("{{ loop_step | map(attribute='v') | list }}", ctx) == [1, 2, 3]
    assert evaluate("{{ loop_step | first }}", ctx) == {"v": 1}
    assert evaluate("{{ loop_step | last }}", ctx) == {"v": 3}
    assert evaluate("{{ loop_step[1].v }}", ctx) == 2
    assert evaluate("{{ loop_step.data[0].v }}", ctx) == 1


def test_loop_stats_and_the_success_alias() -> None:
    ctx = context()
    assert evaluate("{{ loop_step.stats.succeeded }}", ctx) == 3
    assert evaluate("{{ loop_step.stats.success }}", ctx) == 3
    assert evaluate("{{ loop_step.stats['success'] }}", ctx) == 3
    assert evaluate("{{ loop_step.stats.failed == 0 }}", ctx) is True
    assert evaluate("{{ loop_step.stats }}", ctx) == {"total": 3, "succeeded": 3, "failed": 0}


def test_loop_result_as_a_whole_is_the_stored_value() -> None:
    ctx = context()
    assert evaluate("{{ loop_step }}", ctx) == LOOP_RESULT
    assert type(evaluate("{{ loop_step }}", ctx)) is dict
    assert json.loads(evaluate("{{ loop_step | tojson }}", ctx)) == LOOP_RESULT  # type: ignore[arg-type]
    assert evaluate("{{ loop_step.result.stats.total }}", ctx) == 3


def test_only_exactly_results_and_stats_make_a_loop_aggregate() -> None:
    ctx = {"s": result_view({"results": [1, 2], "stats": {}, "other": 0})}
    assert evaluate("{{ s | length }}", ctx) == 3
    assert evaluate("{{ s.data }}", ctx) == {"results": [1, 2], "stats": {}, "other": 0}


def test_empty_loop_result() -> None:
    ctx = {"s": result_view({"results": [], "stats": {"total": 0, "succeeded": 0, "failed": 0}})}
    assert evaluate("{{ s | length }}", ctx) == 0
    assert evaluate("{% for r in s %}x{% else %}none{% endfor %}", ctx) == "none"


# --- the compiled-template cache ----------------------------------------------------------------------


def test_each_template_string_compiles_once() -> None:
    template = "{{ n * 3 }} unique-to-the-cache-test"
    before = templates.cache_info()
    for n in range(5):
        assert evaluate(template, {"n": n}) == f"{n * 3} unique-to-the-cache-test"
    after = templates.cache_info()
    assert after.misses - before.misses == 1
    assert after.hits - before.hits == 4
    assert after.maxsize is not None and after.maxsize >= 10_000


def test_rendering_a_cached_expression_ten_thousand_times() -> None:
    ctx = context()
    results = [evaluate("{{ step_a.data.nested.x + n }}", ctx) for _ in range(10_000)]
    assert results == [6] * 10_000
    results = [evaluate("{{ cfg.b.c }}", ctx) for _ in range(10_000)]
    assert set(results) == {"deep"}
