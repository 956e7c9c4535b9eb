"""Task policy arithmetic: which rule applies to a task's outcome, and how long a retry waits.

The rules (REFERENCE §4.6, DECISIONS 12-13), pure and without a clock:

* Rules are tried top to bottom; the first whose ``when`` is true wins; a rule without ``when``
  (``else``) matches when it is reached. The caller decides what "true" means (render + truthy).
* No rule matched: a successful task continues, a failed one fails (:func:`default_action`).
* ``retry`` with ``attempts: N`` allows N runs in total, the first included (default
  :data:`DEFAULT_RETRY_ATTEMPTS`). The delay before retry ``n`` (1, 2, ...) is ``delay`` for
  ``backoff`` none/fixed/absent, ``delay * n`` for linear, ``delay * 2**(n-1)`` for exponential,
  never more than ``max_delay`` when that is given.
* A command runs at most :data:`DEFAULT_MAX_TASK_RUNS` tasks (retries and jumps included), so a jump
  loop that never breaks fails instead of running forever.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from noetl.dsl.model import PolicyAction, Rule

DEFAULT_MAX_TASK_RUNS: Final = 10_000
DEFAULT_RETRY_ATTEMPTS: Final = 3
_MAX_DOUBLINGS: Final = 1000  # 2.0 ** 1024 overflows; far beyond any useful delay anyway


def choose_rule(rules: Sequence[Rule], evaluate_when: Callable[[str], bool]) -> Rule | None:
    """The first rule whose ``when`` is true (``else`` rules match when reached); None if none matched."""
    for rule in rules:
        if rule.when is None or evaluate_when(rule.when):
            return rule
    return None


def default_action(ok: bool) -> PolicyAction:
    """What happens when no rule matched (or there are none): success continues, error fails."""
    return "continue" if ok else "fail"


def retry_attempts(rule: Rule) -> int:
    """Total runs a ``retry`` rule allows, the first run included."""
    return DEFAULT_RETRY_ATTEMPTS if rule.attempts is None else rule.attempts


def retry_delay(rule: Rule, n: int) -> float:
    """Seconds to wait before retry number ``n`` (1 for the second run, 2 for the third, ...)."""
    base = max(rule.delay, 0.0)
    if rule.backoff == "linear":
        delay = base * n
    elif rule.backoff == "exponential":
        delay = base * 2.0 ** min(max(n - 1, 0), _MAX_DOUBLINGS)
    else:
        delay = base
    if rule.max_delay is not None:
        delay = min(delay, rule.max_delay)
    return delay
