"""Hypothesis profiles for the fuzz tests.

``ci`` (the default) is derandomized and small, so a CI run is deterministic and bounded; ``long``
(``HYPOTHESIS_PROFILE=long``) draws fresh random examples, ``NOETL_FUZZ_EXAMPLES`` (20,000) per test,
for a search by hand (see docs/testing.md).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci", max_examples=200, deadline=None, derandomize=True, suppress_health_check=_QUIET, print_blob=True
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("NOETL_FUZZ_EXAMPLES", "20000")),
    deadline=None,
    derandomize=False,
    suppress_health_check=_QUIET,
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
