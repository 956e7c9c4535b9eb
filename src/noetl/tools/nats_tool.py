"""The ``nats`` tool: NATS core, JetStream and KeyValue (nats-py; ``pip install 'noetl[nats]'``).

Operations: ``publish`` and ``request`` (core NATS), ``kv_put``, ``kv_get``, ``kv_delete``
(KeyValue, upstream's fixtures use these), ``js_publish`` and ``js_pull`` (JetStream; ``js_pull``
fetches up to ``batch`` messages through a durable pull consumer and acknowledges them).

The credential (``auth``, type ``nats``) holds ``url`` (or ``servers``: a list), and optionally
``user``/``password`` or ``token``. Each call opens its own connection, without reconnects, and
closes it; an unreachable server fails within the task's timeout naming the host and port.

Values: a string is sent as its UTF-8 bytes, anything else as JSON; what comes back is decoded as
JSON when it parses, else as text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError, ToolError
from noetl.tools import fields
from noetl.tools.base import Call
from noetl.tools.spec import Config, model_fields, parse_config


class NatsConfig(Config):
    """The ``nats`` task's fields."""

    operation: Literal["publish", "request", "kv_put", "kv_get", "kv_delete", "js_publish", "js_pull"]
    subject: str | None = None
    data: Any = None
    bucket: str | None = None
    key: str | None = None
    value: Any = None
    create: bool = False
    stream: str | None = None
    durable: str | None = None
    batch: int = 10
    wait: float = 1.0


class NatsTool:
    """Publishes, requests, reads and writes KeyValue entries and JetStream messages on NATS."""

    kind = "nats"
    config_model = NatsConfig
    config_fields, required_fields = model_fields(NatsConfig)
    description = (
        "NATS: publish, request, KeyValue get/put/delete (create the bucket with create: true), "
        "JetStream publish and pull (durable consumer). Credential: url, user/password or token."
    )
    credential_types = ("nats",)
    result = {
        "type": "object",
        "description": "publish: {subject, bytes}; request: {subject, data}; "
        "kv_put: {bucket, key, revision}; kv_get: {bucket, key, found, value, revision}; "
        "kv_delete: {bucket, key, deleted}; "
        "js_publish: {stream, seq}; js_pull: {subject, messages: [{subject, data, seq}], count}",
    }
    example = (
        "tool:\n  kind: nats\n  auth: my_nats\n  operation: kv_put\n  bucket: sessions\n"
        "  key: '{{ user_id }}'\n  value: {state: active}\n"
    )

    async def run(self, call: Call) -> JSON:
        config = parse_config(NatsConfig, call)
        try:
            import nats
        except ImportError:
            raise ToolConfigError(
                "the nats tool needs nats-py: pip install 'noetl[nats]'", step=call.step, field="kind"
            ) from None
        timeout = fields.timeout(call) or 30.0
        client = await _connect(nats, call, config, timeout)
        try:
            return await _OPERATIONS[config.operation](client, config, call, timeout)
        except ToolError:
            raise
        except Exception as exc:
            raise _error(call, config, exc) from None
        finally:
            await client.close()


async def _connect(nats: Any, call: Call, config: NatsConfig, timeout: float) -> Any:
    data = _credential_data(call)
    servers = data.get("servers") or data.get("url") or data.get("nats_url")
    if not servers:
        raise ToolConfigError(
            f"nats {config.operation}: give 'auth' naming a nats credential with 'url'",
            step=call.step,
            field="auth",
        )
    options: dict[str, Any] = {
        "servers": servers,
        "connect_timeout": min(timeout, 10.0),
        "allow_reconnect": False,
        "max_reconnect_attempts": 1,  # 0 would retry a refused first connection for ever
        "reconnect_time_wait": 0.1,
    }
    for name in ("user", "password", "token"):
        if data.get(name):
            options[name] = data[name]

    seen: list[Exception] = []

    async def remember(exc: Exception) -> None:  # nats-py would log every failed attempt
        seen.append(exc)

    try:
        # nats-py keeps retrying a refused first connection: the deadline is ours
        return await asyncio.wait_for(nats.connect(error_cb=remember, **options), min(timeout, 10.0))
    except Exception as exc:
        where = ", ".join(_hostport(s) for s in (servers if isinstance(servers, list) else [servers]))
        cause = seen[-1] if seen else exc
        kind = f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
        if "authorization" in str(cause).lower():
            name = (call.credential or {}).get("name", "(unnamed)")
            raise ToolError(
                f"nats {config.operation} (step '{call.step}'): credential '{name}' was refused by {where}",
                error_kind="auth",
                step=call.step,
                field="auth",
            ) from None
        raise ToolError(
            f"nats {config.operation} (step '{call.step}'): cannot reach {where}: {kind}",
            error_kind="nats",
            retryable=True,
            step=call.step,
        ) from None


def _hostport(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    return f"{parts.hostname}:{parts.port or 4222}"


def _credential_data(call: Call) -> Mapping[str, Any]:
    data = (call.credential or {}).get("data")
    return data if isinstance(data, Mapping) else {}


def _encode(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()


def _decode(raw: bytes | None) -> JSON:
    if raw is None:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed: JSON = json.loads(text)
    except ValueError:
        return text
    return parsed


def _need(config: NatsConfig, call: Call, *names: str) -> None:
    for name in names:
        if getattr(config, name) in (None, ""):
            raise ToolConfigError(f"nats {config.operation} needs '{name}'", step=call.step, field=name)


async def _publish(nc: Any, config: NatsConfig, call: Call, timeout: float) -> JSON:
    _need(config, call, "subject")
    payload = _encode(config.data if config.data is not None else "")
    await nc.publish(config.subject, payload)
    await nc.flush(timeout=timeout)
    return {"subject": config.subject, "bytes": len(payload)}


async def _request(nc: Any, config: NatsConfig, call: Call, timeout: float) -> JSON:
    _need(config, call, "subject")
    answer = await nc.request(config.subject, _encode(config.data or ""), timeout=timeout)
    return {"subject": config.subject, "data": _decode(answer.data)}


async def _kv(nc: Any, config: NatsConfig, call: Call) -> Any:
    _need(config, call, "bucket")
    js = nc.jetstream()
    if config.create:
        return await js.create_key_value(bucket=config.bucket)
    return await js.key_value(config.bucket)


async def _kv_put(nc: Any, config: NatsConfig, call: Call, timeout: float) -> JSON:
    _need(config, call, "key")
    kv = await _kv(nc, config, call)
    revision = await kv.put(config.key, _encode(config.value if config.value is not None else ""))
    return {"bucket": config.bucket, "key": config.key, "revision": int(revision)}


async def _kv_get(nc: Any, config: NatsConfig, call: Call, timeout: float) -> JSON:
    from nats.js.errors import KeyNotFoundError

    _need(config, call, "key")
    kv = await _kv(nc, config, call)
    try:
        entry = await kv.get(config.key)
    except KeyNotFoundError:
        return {"bucket": config.bucket, "key": config.key, "found": False, "value": None}
    return {
        "bucket": config.bucket,
        "key": config.key,
        "found": True,
        "value": _decode(entry.value),
        "revision": int(entry.revision or 0),
    }


async def _kv_delete(nc: Any, config: NatsConfig, call: Call, timeout: float) -> JSON:
    _need(config, call, "key")
    kv = await _kv(nc, config, call)
    await kv.delete(config.key)
    return {"bucket": config.bucket, "key": config.key, "deleted": True}


async def _js_publish(nc: Any, config: NatsConfig, call: Call, timeout: float) -> JSON:
    _need(config, call, "subject")
    js = nc.jetstream(timeout=timeout)
    ack = await js.publish(
        config.subject, _encode(config.data if config.data is not None else ""), stream=config.stream
    )
    return {"subject": config.subject, "stream": ack.stream, "seq": int(ack.seq)}


async def _js_pull(nc: Any, config: NatsConfig, call: Call, timeout: float) -> JSON:
    import nats.errors

    _need(config, call, "subject", "durable")
    js = nc.jetstream(timeout=timeout)
    sub = await js.pull_subscribe(config.subject, durable=config.durable, stream=config.stream)
    messages: list[JSON] = []
    try:
        fetched = await sub.fetch(max(config.batch, 1), timeout=min(config.wait, timeout))
    except (nats.errors.TimeoutError, TimeoutError):  # nothing arrived within 'wait'
        fetched = []
    for msg in fetched:
        messages.append(
            {"subject": msg.subject, "data": _decode(msg.data), "seq": int(msg.metadata.sequence.stream)}
        )
        await msg.ack()
    return {
        "subject": config.subject,
        "durable": config.durable,
        "messages": messages,
        "count": len(messages),
    }


def _error(call: Call, config: NatsConfig, exc: Exception) -> ToolError:
    target = config.bucket or config.subject or ""
    name = type(exc).__name__
    missing = "NotFound" in name or "no responders" in str(exc).lower()
    detail = str(exc) or name
    if name == "BucketNotFoundError":
        detail = f"KeyValue bucket '{config.bucket}' does not exist (create: true makes it)"
    elif name == "NoStreamResponseError" or "no response from stream" in detail.lower():
        detail = f"no JetStream stream takes subject '{config.subject}'"
    return ToolError(
        f"nats {config.operation} {target} (step '{call.step}'): {detail}",
        error_kind="not_found" if missing else "nats",
        retryable=name in ("TimeoutError",),
        step=call.step,
    )


_OPERATIONS = {
    "publish": _publish,
    "request": _request,
    "kv_put": _kv_put,
    "kv_get": _kv_get,
    "kv_delete": _kv_delete,
    "js_publish": _js_publish,
    "js_pull": _js_pull,
}

TOOL = NatsTool()
