"""Stall reasons: what keeps a ready command from ever being claimed by the live workers."""

from __future__ import annotations

from noetl.runtime.stalls import reasons

DEFAULT = {"pools": ["default"], "meta": {}}
GPU = {"pools": ["gpu"], "meta": {"resources": {"gpu": 2, "memory_mb": 8000}}}


def test_a_pool_no_live_worker_serves_is_a_stall_and_says_how_to_serve_it() -> None:
    (why,) = reasons("gpu", None, [DEFAULT], set())
    assert "no live worker serves pool 'gpu'" in why and "noetl worker start --pool gpu" in why
    assert reasons("gpu", None, [], set()) == [why]


def test_a_served_pool_without_needs_is_no_stall_even_when_busy() -> None:
    assert reasons("default", None, [DEFAULT], set()) == []
    assert reasons("gpu", {"resources": {"gpu": 2}}, [DEFAULT, GPU], set()) == []


def test_a_worker_resource_no_worker_of_the_pool_offers_is_a_stall() -> None:
    (why,) = reasons("gpu", {"resources": {"gpu": 3, "memory_mb": 4000}}, [GPU], set())
    assert "needs gpu=3" in why and "most: 2" in why and "noetl resource set gpu N" in why
    (none,) = reasons("default", {"resources": {"tpu": 1}}, [DEFAULT, GPU], set())
    assert "needs tpu=1" in none and "most: 0" in none


def test_a_global_resource_is_never_a_stall() -> None:
    assert reasons("default", {"resources": {"pg_pool": 1}}, [DEFAULT], {"pg_pool"}) == []
