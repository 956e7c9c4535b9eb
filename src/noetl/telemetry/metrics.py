"""Worker metrics: what a worker measures, and the two ways it leaves the worker.

Workers take no inbound connections, so nothing scrapes them. Each keeps its own registry
(:class:`WorkerMetrics`) and either

* **pushes** it every ``interval`` seconds (:class:`Pusher`) to VictoriaMetrics' Prometheus import
  API (``…/api/v1/import/prometheus``) or to a Prometheus remote-write endpoint (``…/api/v1/write``,
  protobuf + snappy), labelled ``worker="<worker id>"``; or
* when no push URL is set, writes its exposition text to its row of the worker registry with every
  heartbeat, and the server's ``/metrics`` serves it (:func:`merge`), labelled the same way.

A push that fails is counted (``noetl_worker_metrics_push_failures_total``) and logged at most once a
minute; it never waits on a step, and a step never waits on it.

=================================================== ===============================================
``noetl_worker_step_duration_seconds{kind,pool}``    time to run a command (histogram)
``noetl_worker_tasks_total{kind,outcome}``            commands run, ``ok`` or the error kind
``noetl_worker_python_restarts_total``                python children replaced (crash, memory, timeout)
``noetl_worker_leases_lost_total``                    leases lost (expired or cancelled while running)
``noetl_worker_claim_duration_seconds``               one claim round trip (histogram)
``noetl_worker_metrics_push_failures_total``          pushes the metrics endpoint did not take
=================================================== ===============================================
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

log = logging.getLogger("noetl.metrics")

RESTARTING_ERRORS = frozenset({"crash", "memory", "timeout"})
"""Error kinds after which the python pool replaces the child that ran the task."""
STEP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
CLAIM_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
WARN_EVERY_SECONDS = 60.0


class WorkerMetrics:
    """One worker's metrics registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.step_seconds = Histogram(
            "noetl_worker_step_duration_seconds",
            "Time to run one command, by tool kind and pool.",
            ["kind", "pool"],
            buckets=STEP_BUCKETS,
            registry=self.registry,
        )
        self.tasks = Counter(
            "noetl_worker_tasks",
            "Commands run, by tool kind and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.python_restarts = Counter(
            "noetl_worker_python_restarts",
            "Python children replaced after a crash, memory or timeout.",
            registry=self.registry,
        )
        self.leases_lost = Counter(
            "noetl_worker_leases_lost",
            "Leases lost while running (expired or cancelled).",
            registry=self.registry,
        )
        self.claim_seconds = Histogram(
            "noetl_worker_claim_duration_seconds",
            "One claim round trip.",
            buckets=CLAIM_BUCKETS,
            registry=self.registry,
        )
        self.push_failures = Counter(
            "noetl_worker_metrics_push_failures",
            "Metric pushes the endpoint did not take.",
            registry=self.registry,
        )

    def command(self, kind: str, pool: str, outcome: str, seconds: float) -> None:
        """Record one command run: its tool kind, pool, outcome (``ok`` or an error kind) and time."""
        self.step_seconds.labels(kind, pool).observe(seconds)
        self.tasks.labels(kind, outcome).inc()
        if outcome in RESTARTING_ERRORS and "python" in kind.split("+"):
            self.python_restarts.inc()

    def text(self) -> str:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry).decode()


# ---- the server's view: every worker's metrics under one /metrics ----------------------------------


def merge(texts: Mapping[str, str]) -> list[Metric]:
    """Metric families from workers' expositions (worker id -> text), each sample labelled with its
    worker; families of the same name from several workers become one."""
    families: dict[str, Metric] = {}
    for worker_id, text in sorted(texts.items()):
        try:
            parsed = list(text_string_to_metric_families(text))
        except ValueError:
            log.warning("worker %s reported metrics that do not parse; skipped", worker_id)
            continue
        for family in parsed:
            merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            merged.samples.extend(
                Sample(s.name, {**s.labels, "worker": worker_id}, s.value, s.timestamp, s.exemplar)
                for s in family.samples
            )
    return list(families.values())


# ---- pushing ---------------------------------------------------------------------------------------


class Pusher:
    """Pushes a worker's metrics every ``interval`` seconds until stopped."""

    def __init__(self, url: str, worker_id: str, metrics: WorkerMetrics, *, interval: float = 10.0) -> None:
        self.url = url
        self.worker_id = worker_id
        self.metrics = metrics
        self.interval = interval
        self.remote_write = url.rstrip("/").endswith("/write")
        self.failures = 0
        self._warned_at = -WARN_EVERY_SECONDS
        self._client = httpx.AsyncClient(timeout=min(interval, 5.0))

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
                await self.push()
        finally:
            await self._client.aclose()

    async def push(self) -> bool:
        """One push; False (counted, logged at most once a minute) when the endpoint did not take it."""
        try:
            response = await self._send()
            if response.status_code >= 300:
                raise httpx.HTTPStatusError(
                    str(response.status_code), request=response.request, response=response
                )
        except httpx.HTTPError as exc:
            self.metrics.push_failures.inc()
            self.failures += 1
            if time.monotonic() - self._warned_at >= WARN_EVERY_SECONDS:
                self._warned_at = time.monotonic()
                log.warning(
                    "metrics push to %s failed (%s); dropping metrics until it answers (%d failures so far)",
                    self.url,
                    type(exc).__name__,
                    self.failures,
                    extra={"worker_id": self.worker_id},
                )
            return False
        return True

    async def _send(self) -> httpx.Response:
        text = self.metrics.text()
        if not self.remote_write:
            params = {"extra_label": f"worker={self.worker_id}"}
            return await self._client.post(self.url, content=text.encode(), params=params)
        body = remote_write_body(text_string_to_metric_families(text), {"worker": self.worker_id})
        headers = {
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        }
        return await self._client.post(self.url, content=_snappy(body), headers=headers)


# ---- Prometheus remote write: a WriteRequest in protobuf, by hand (three small messages) -----------


def remote_write_body(
    families: Iterable[Metric], labels: Mapping[str, str], now_ms: int | None = None
) -> bytes:
    """A ``prometheus.WriteRequest`` with one time series per sample, stamped ``now_ms``."""
    stamp = now_ms if now_ms is not None else int(time.time() * 1000)
    out = bytearray()
    for sample in _samples(families):
        series_labels = {"__name__": sample.name, **sample.labels, **labels}
        out += _field(1, _series(sorted(series_labels.items()), sample.value, stamp))
    return bytes(out)


def _samples(families: Iterable[Metric]) -> Iterator[Sample]:
    for family in families:
        yield from (s for s in family.samples if not s.name.endswith("_created"))


def _series(labels: Sequence[tuple[str, str]], value: float, stamp: int) -> bytes:
    body = bytearray()
    for name, label_value in labels:
        body += _field(1, _field(1, name.encode()) + _field(2, label_value.encode()))
    sample = b"\x09" + struct.pack("<d", value) + b"\x10" + _varint(stamp)
    body += _field(2, sample)
    return bytes(body)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _snappy(data: bytes) -> bytes:
    try:
        import cramjam
    except ImportError:  # pragma: no cover - the extra is installed with the test dependencies
        raise httpx.HTTPError(
            "Prometheus remote write needs snappy: pip install 'noetl[telemetry]'"
        ) from None
    return bytes(cramjam.snappy.compress_raw(data))
