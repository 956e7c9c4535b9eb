"""The render budget (noetl.dsl.budget): oversized values refused before they are built, loops and
calls counted, ordinary templates untouched."""

from __future__ import annotations

import pytest

from noetl.dsl import budget, templates
from noetl.errors import TemplateError


@pytest.mark.parametrize(
    ("template", "said"),
    [
        ("{{ ('a' * 10**9)|length }}", "a repeated sequence"),
        ("{{ [1, 2] * 10**9 }}", "a repeated sequence"),
        ("{{ 'a'.ljust(10**9) }}", "width given to 'ljust'"),
        ("{{ 'a'|center(10**9) }}", "argument of filter 'center'"),
        ("{{ '%1000000000s'|format('x') }}", "formatting width"),
        ("{{ '{:>1000000000}'.format('x') }}", "formatting width"),
        ("{{ '{:>{}}'.format('x', 10**9) }}", "number passed to format"),
        ("{{ ('a' * 100000).replace('a', 'a' * 1000)|length }}", "the result of 'replace'"),
        ("{{ range(10)|slice(10**9)|list }}", "argument of filter 'slice'"),
        ("{{ 10 ** 100000000 }}", "a number's digits"),
        (
            "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "a concatenated string",
        ),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "1,000,000 operations",
        ),
    ],
)
def test_oversized_or_endless_templates_fail(template: str, said: str) -> None:
    with pytest.raises(budget.BudgetExceeded, match="render budget") as caught:
        templates.render(template, {})
    assert said in caught.value.message


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 'ab' * 3 }}", "ababab"),
        ("{% for x in items %}{{ x }},{% endfor %}", "1,2,3,"),
        ("{{ items|map('string')|join('-') }}", "1-2-3"),
        ("{{ '{} {:>3}'.format('a', 1) }}", "a   1"),
        ("{{ 'a' ~ 'b' ~ items|length }}", "ab3"),
        ("{{ missing|default('d') }}", "d"),
    ],
)
def test_ordinary_templates_render_as_before(template: str, expected: object) -> None:
    assert templates.render(template, {"items": [1, 2, 3]}) == expected


def test_a_cancelled_budget_stops_the_render() -> None:
    spent = budget.Budget()
    spent.cancel()
    with budget.active(spent), pytest.raises(TemplateError, match="timeout passed"):
        templates.render("{% for i in range(10) %}{{ i }}{% endfor %}", {})


def test_a_budget_spans_the_renders_it_is_active_for() -> None:
    small = budget.Budget(max_operations=50)
    with budget.active(small):
        templates.render("{% for i in range(20) %}{% endfor %}", {})
        with pytest.raises(budget.BudgetExceeded):
            templates.render("{% for i in range(40) %}{% endfor %}", {})
