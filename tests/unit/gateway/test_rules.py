"""The gateway's pure rules: the canonical request, the route table, the client address, the
bounded rate limiter, catalog paths and the shared flag parser (issue 10; the end-to-end attacks
are in tests/security/test_authorization.py)."""

from __future__ import annotations

import pytest

from noetl import flags
from noetl.dsl import catalogpath
from noetl.gateway import canonical, clients, policy
from noetl.gateway.ratelimit import RateLimiter


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"/noetl/catalog/../credentials/x", "'..' part"),
        (b"/noetl/catalog/%2e%2e/credentials/x", "'..' part"),
        (b"/noetl/catalog/%2E/x", "'.' part"),
        (b"/noetl/a%2e/x", "encoded '.'"),
        (b"/noetl/x%2F..%2Fcredentials/x", "encoded '/'"),
        (b"/noetl/x%5Cy", "backslash"),
        (b"/noetl/x%252e%252e", "double-encoded"),
        (b"/noetl/executions/", "trailing"),
        (b"/noetl/a//b", "empty part"),
        (b"/noetl/a%00b", "control character"),
    ],
)
def test_non_canonical_paths_are_refused(raw: bytes, why: str) -> None:
    with pytest.raises(canonical.NotCanonical, match="not canonical") as refused:
        canonical.target(raw, b"/noetl/", b"")
    assert why in refused.value.reason


def test_the_forwarded_path_is_the_decoded_one_re_encoded() -> None:
    target = canonical.target(b"/noetl/credentials/my%20cred", b"/noetl/", b"include_data=On&q=a+b")
    assert target.parts == ("credentials", "my cred")
    assert target.encoded == "credentials/my%20cred"
    assert dict(target.query) == {"include_data": "true", "q": "a b"}


@pytest.mark.parametrize("query", [b"include_data=t", b"include_data=y", b"include_data=1&include_data=0"])
def test_flags_the_policy_decides_on_are_unambiguous(query: bytes) -> None:
    with pytest.raises(canonical.NotCanonical):
        canonical.target(b"/noetl/credentials/x", b"/noetl/", query)


@pytest.mark.parametrize("query", [b"offset=100000000000000000000", b"page=-1", b"limit=ten"])
def test_paging_values_must_be_whole_numbers_in_range(query: bytes) -> None:
    with pytest.raises(canonical.NotCanonical, match="whole number"):
        canonical.target(b"/noetl/executions", b"/noetl/", query)


def test_the_shared_flag_parser() -> None:
    assert [flags.parse(v) for v in ("1", "TRUE", " yes ", "On")] == [True] * 4
    assert [flags.parse(v) for v in ("0", "False", "no", "OFF")] == [False] * 4
    for bad in ("t", "y", "", "2"):
        with pytest.raises(ValueError):
            flags.parse(bad)


def test_routes_the_policy_does_not_name_are_denied() -> None:
    for method, path in (
        ("GET", "openapi.json"),
        ("GET", "docs"),
        ("GET", "events"),
        ("PATCH", "executions"),
        ("GET", "executions/1/cancellation-check/x"),
    ):
        action = policy.classify(method, path)
        assert action.kind == "denied", (method, path)
        assert policy.decide(policy.Principal("a", "admin", ("*",)), action, None) is not None
    assert policy.classify("GET", "replay/state").lookup == "execution"
    assert policy.classify("GET", "credentials/x", include_data=True).kind == "admin"
    assert policy.classify("GET", "stats/finance/report").url_path == "finance/report"


def test_no_paths_means_nothing() -> None:
    nobody = policy.Principal("jwt:x", "admin", ())
    assert policy.decide(nobody, policy.classify("GET", "executions/12"), "finance/report") is not None
    assert not policy.path_allowed((), "finance/report")


def test_forwarded_for_counts_only_from_trusted_proxies() -> None:
    trusted = clients.networks("10.0.0.0/8, 192.168.1.5")
    assert clients.address("127.0.0.1", "203.0.113.7", ()) == "127.0.0.1"
    assert clients.address("203.0.113.9", "1.2.3.4", trusted) == "203.0.113.9"
    assert clients.address("10.1.2.3", "198.51.100.4, 192.168.1.5", trusted) == "198.51.100.4"
    assert clients.address("10.1.2.3", "not-an-ip", trusted) == "10.1.2.3"


def test_the_rate_limiter_keeps_a_bounded_number_of_keys() -> None:
    clock = [0.0]
    limiter = RateLimiter(1.0, 2, clock=lambda: clock[0], max_keys=3)
    for n in range(100):
        limiter.take(f"client-{n}")
    assert len(limiter) == 3
    assert limiter.take("a") == 0 and limiter.take("a") == 0 and limiter.take("a") >= 1
    assert limiter.waiting("a") >= 1 and limiter.waiting("b") == 0


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("finance/report ", "' '"),
        ("finance/\nreport", "'\\n'"),
        ("finance/./report", "'.' part"),
        ("fin\u0430nce/report", "U+0430"),
        ("/finance/report", "starts with '/'"),
        ("finance//report", "empty part"),
    ],
)
def test_catalog_paths_have_one_spelling(path: str, says: str) -> None:
    found = catalogpath.problem(path)
    assert found is not None and says in found
    assert catalogpath.problem("finance/daily-report_v2.1") is None
