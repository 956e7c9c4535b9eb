"""Task policy arithmetic (DECISIONS 12-13): rule choice, default actions, retry delays."""

from __future__ import annotations

import pytest

from noetl.dsl.model import Rule
from noetl.engine import policy


@pytest.mark.parametrize(
    ("backoff", "delay", "max_delay", "expected"),
    [
        ("none", 0.5, None, [0.5, 0.5, 0.5, 0.5]),
        ("fixed", 2.0, None, [2.0, 2.0, 2.0, 2.0]),
        ("linear", 0.5, None, [0.5, 1.0, 1.5, 2.0]),
        ("exponential", 0.5, None, [0.5, 1.0, 2.0, 4.0]),
        ("exponential", 1.0, 3.0, [1.0, 2.0, 3.0, 3.0]),
        ("linear", 1.0, 2.5, [1.0, 2.0, 2.5, 2.5]),
        ("fixed", 5.0, 1.0, [1.0, 1.0, 1.0, 1.0]),
        ("exponential", 0.0, None, [0.0, 0.0, 0.0, 0.0]),
    ],
)
def test_retry_delay_table(backoff, delay, max_delay, expected):
    rule = Rule(when=None, do="retry", backoff=backoff, delay=delay, max_delay=max_delay)
    assert [policy.retry_delay(rule, n) for n in (1, 2, 3, 4)] == expected


def test_delay_without_backoff_is_constant():
    rule = Rule(when=None, do="retry", delay=0.25)  # backoff absent: the model's default "none"
    assert [policy.retry_delay(rule, n) for n in (1, 5, 50)] == [0.25, 0.25, 0.25]


def test_exponential_delay_of_a_huge_retry_number_does_not_overflow():
    rule = Rule(when=None, do="retry", backoff="exponential", delay=1.0, max_delay=60.0)
    assert policy.retry_delay(rule, 5000) == 60.0


def test_retry_attempts_default_and_explicit():
    assert policy.retry_attempts(Rule(when=None, do="retry")) == policy.DEFAULT_RETRY_ATTEMPTS == 3
    assert policy.retry_attempts(Rule(when=None, do="retry", attempts=7)) == 7


def test_choose_rule_first_true_wins_in_order():
    rules = [Rule(when="a", do="retry"), Rule(when="b", do="fail"), Rule(when="c", do="break")]
    asked: list[str] = []

    def holds(when: str) -> bool:
        asked.append(when)
        return when in {"b", "c"}

    assert policy.choose_rule(rules, holds) is rules[1]
    assert asked == ["a", "b"]  # later rules are not evaluated


def test_choose_rule_else_matches_when_reached_and_not_before():
    rules = [Rule(when="a", do="continue"), Rule(when=None, do="fail"), Rule(when="b", do="break")]
    assert policy.choose_rule(rules, lambda w: w == "a") is rules[0]
    assert policy.choose_rule(rules, lambda w: w == "b") is rules[1]


def test_choose_rule_none_when_nothing_matches():
    assert policy.choose_rule([Rule(when="a", do="fail")], lambda w: False) is None
    assert policy.choose_rule([], lambda w: True) is None


def test_default_action_continues_success_and_fails_error():
    assert policy.default_action(True) == "continue"
    assert policy.default_action(False) == "fail"
    assert policy.DEFAULT_MAX_TASK_RUNS == 10_000
