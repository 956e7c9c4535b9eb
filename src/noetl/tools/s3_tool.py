"""The ``s3`` tool: objects in Amazon S3 or any S3-compatible store (boto3; ``pip install 'noetl[s3]'``).

Operations: ``get``, ``put``, ``list`` (by prefix), ``delete``, ``copy``, ``head`` and ``presign``.
The credential (``auth``, type ``s3`` or ``aws``) holds ``access_key_id``, ``secret_access_key`` and
optionally ``session_token``, ``region`` and ``endpoint_url`` (an S3-compatible endpoint); nothing of
it is in the playbook.

Large data never passes through a result: ``put`` with ``file`` streams a local file (under the file
roots) in multipart chunks, and ``get`` with ``file`` streams the object to a local file, both with
bounded memory (boto3's transfer manager, ``chunk_mb`` per part). ``get`` without ``file`` returns
the object's content only up to ``max_bytes`` (default 1 MiB).

Errors name the service, the operation, the object and the step; an unreachable endpoint names its
host and port; refused credentials name the credential, never a secret. boto3 does not retry on its
own here: the task's retry policy decides.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError, ToolError
from noetl.tools import fields
from noetl.tools.base import Call
from noetl.tools.file_tool import ROOTS_KEY, confine
from noetl.tools.spec import Config, model_fields, parse_config

_REFUSED = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken"}
)
_MISSING = frozenset({"NoSuchBucket", "NoSuchKey", "404", "NotFound"})


class S3Config(Config):
    """The ``s3`` task's fields."""

    operation: Literal["get", "put", "list", "delete", "copy", "head", "presign"]
    bucket: str
    key: str | None = None
    prefix: str = ""
    data: Any = None
    file: str | None = None
    format: Literal["auto", "text", "json", "bytes"] = "auto"
    content_type: str | None = None
    source_bucket: str | None = None
    source_key: str | None = None
    method: Literal["get", "put"] = "get"
    expires: int = 3600
    limit: int = 1000
    max_bytes: int = 1_048_576
    chunk_mb: int = 8


class S3Tool:
    """Gets, puts, lists, deletes, copies and presigns S3 objects."""

    kind = "s3"
    config_model = S3Config
    config_fields, required_fields = model_fields(S3Config)
    description = (
        "Amazon S3 or an S3-compatible store: get, put (streamed multipart from a file), list by prefix, "
        "delete, copy, head, presigned URL. Credential: access_key_id, secret_access_key, region, "
        "endpoint_url."
    )
    credential_types = ("s3", "aws")
    result = {
        "type": "object",
        "description": "get: {bucket, key, bytes, text | data | path}; put/copy: {bucket, key, bytes, etag}; "
        "list: {bucket, prefix, objects: [{key, size, modified, etag}], count, truncated}; "
        "delete: {bucket, deleted}; head: {bucket, key, exists, bytes}; presign: {url, expires}",
    }
    example = (
        "tool:\n  kind: s3\n  auth: my_s3\n  operation: put\n  bucket: reports\n"
        "  key: daily/{{ execution_id }}.parquet\n  file: out/daily.parquet\n"
    )

    async def run(self, call: Call) -> JSON:
        config = parse_config(S3Config, call)
        timeout = fields.timeout(call)
        operation = _OPERATIONS[config.operation]
        try:
            return await asyncio.to_thread(lambda: operation(_client(call, timeout), config, call))
        except ToolError:
            raise
        except Exception as exc:
            raise _service_error(exc, config, call) from None


def _client(call: Call, timeout: float | None) -> Any:
    try:
        import boto3
        from botocore.config import Config as BotoConfig
    except ImportError:
        raise ToolConfigError(
            "the s3 tool needs boto3: pip install 'noetl[s3]'", step=call.step, field="kind"
        ) from None
    data = _credential_data(call)
    seconds = timeout or 60.0
    return boto3.session.Session().client(
        "s3",
        aws_access_key_id=data.get("access_key_id") or data.get("aws_access_key_id"),
        aws_secret_access_key=data.get("secret_access_key") or data.get("aws_secret_access_key"),
        aws_session_token=data.get("session_token"),
        region_name=data.get("region") or "us-east-1",
        endpoint_url=data.get("endpoint_url") or data.get("endpoint"),
        config=BotoConfig(
            connect_timeout=min(seconds, 10.0),
            read_timeout=seconds,
            retries={"max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"} if data.get("endpoint_url") else None,
        ),
    )


def _credential_data(call: Call) -> Mapping[str, Any]:
    credential = call.credential or {}
    data = credential.get("data")
    return data if isinstance(data, Mapping) else {}


def _need_key(config: S3Config, call: Call) -> str:
    if not config.key:
        raise ToolConfigError(f"s3 {config.operation} needs 'key'", step=call.step, field="key")
    return config.key


def _local(config: S3Config, call: Call) -> Path:
    assert config.file is not None
    return confine(tuple(call.services.extras.get(ROOTS_KEY) or ()), config.file, call)


def _get(client: Any, config: S3Config, call: Call) -> JSON:
    key = _need_key(config, call)
    if config.file:
        target = _local(config, call)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        client.download_file(config.bucket, key, str(partial), Config=_transfer(config))
        partial.replace(target)
        return {"bucket": config.bucket, "key": key, "bytes": target.stat().st_size, "path": str(target)}
    answer = client.get_object(Bucket=config.bucket, Key=key)
    size = int(answer.get("ContentLength", 0))
    if size > config.max_bytes:
        answer["Body"].close()
        raise ToolError(
            f"s3 get s3://{config.bucket}/{key}: the object has {size} bytes, more than "
            f"max_bytes={config.max_bytes}; give 'file' to stream it to a local file",
            error_kind="s3",
            step=call.step,
            field="max_bytes",
        )
    body = answer["Body"].read()
    result: dict[str, JSON] = {"bucket": config.bucket, "key": key, "bytes": len(body)}
    fmt = config.format if config.format != "auto" else ("json" if key.endswith(".json") else "text")
    if fmt == "json":
        result["data"] = json.loads(body)
    elif fmt == "bytes":
        import base64

        result["base64"] = base64.b64encode(body).decode()
    else:
        result["text"] = body.decode("utf-8", errors="replace")
    return result


def _transfer(config: S3Config) -> Any:
    from boto3.s3.transfer import TransferConfig

    chunk = max(config.chunk_mb, 5) * 1024 * 1024
    return TransferConfig(multipart_threshold=chunk, multipart_chunksize=chunk, max_concurrency=2)


def _put(client: Any, config: S3Config, call: Call) -> JSON:
    key = _need_key(config, call)
    extra = {"ContentType": config.content_type} if config.content_type else {}
    if config.file:
        source = _local(config, call)
        if not source.is_file():
            raise ToolError(
                f"s3 put: local file '{config.file}' does not exist", step=call.step, field="file"
            )
        client.upload_file(str(source), config.bucket, key, ExtraArgs=extra or None, Config=_transfer(config))
        head = client.head_object(Bucket=config.bucket, Key=key)
        return {"bucket": config.bucket, "key": key, "bytes": source.stat().st_size, "etag": _etag(head)}
    if config.data is None:
        raise ToolConfigError("s3 put needs 'data' or 'file'", step=call.step, field="data")
    if isinstance(config.data, str) and config.format != "json":
        body = config.data.encode()
    else:
        body = json.dumps(config.data).encode()
    answer = client.put_object(Bucket=config.bucket, Key=key, Body=body, **extra)
    return {"bucket": config.bucket, "key": key, "bytes": len(body), "etag": _etag(answer)}


def _etag(answer: Mapping[str, Any]) -> str:
    return str(answer.get("ETag", "")).strip('"')


def _list(client: Any, config: S3Config, call: Call) -> JSON:
    objects: list[JSON] = []
    truncated = False
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=config.bucket, Prefix=config.prefix)
    for page in pages:
        for item in page.get("Contents", ()):
            if len(objects) >= config.limit:
                truncated = True
                break
            objects.append(
                {
                    "key": item["Key"],
                    "size": int(item.get("Size", 0)),
                    "modified": item["LastModified"].isoformat() if item.get("LastModified") else None,
                    "etag": str(item.get("ETag", "")).strip('"'),
                }
            )
        if truncated:
            break
    return {
        "bucket": config.bucket,
        "prefix": config.prefix,
        "objects": objects,
        "count": len(objects),
        "truncated": truncated,
    }


def _delete(client: Any, config: S3Config, call: Call) -> JSON:
    key = _need_key(config, call)
    client.delete_object(Bucket=config.bucket, Key=key)
    return {"bucket": config.bucket, "key": key, "deleted": True}


def _copy(client: Any, config: S3Config, call: Call) -> JSON:
    key = _need_key(config, call)
    if not config.source_key:
        raise ToolConfigError("s3 copy needs 'source_key'", step=call.step, field="source_key")
    source = {"Bucket": config.source_bucket or config.bucket, "Key": config.source_key}
    client.copy(source, config.bucket, key, Config=_transfer(config))
    head = client.head_object(Bucket=config.bucket, Key=key)
    return {
        "bucket": config.bucket,
        "key": key,
        "bytes": int(head.get("ContentLength", 0)),
        "etag": _etag(head),
    }


def _head(client: Any, config: S3Config, call: Call) -> JSON:
    key = _need_key(config, call)
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=config.bucket, Key=key)
    except ClientError as exc:
        if _code(exc) in _MISSING:
            return {"bucket": config.bucket, "key": key, "exists": False}
        raise
    return {"bucket": config.bucket, "key": key, "exists": True, "bytes": int(head.get("ContentLength", 0))}


def _presign(client: Any, config: S3Config, call: Call) -> JSON:
    key = _need_key(config, call)
    method = "get_object" if config.method == "get" else "put_object"
    url = client.generate_presigned_url(
        method, Params={"Bucket": config.bucket, "Key": key}, ExpiresIn=config.expires
    )
    return {"bucket": config.bucket, "key": key, "url": url, "expires": config.expires}


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _service_error(exc: Exception, config: S3Config, call: Call) -> ToolError:
    """A ToolError naming service, operation, object and step - and the credential, never a secret."""
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
    )

    target = f"s3://{config.bucket}/{config.key or config.prefix}"
    what = f"s3 {config.operation} {target} (step '{call.step}')"
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        endpoint = _endpoint(call)
        return ToolError(
            f"{what}: cannot reach {endpoint}: {type(exc).__name__}",
            error_kind="s3",
            retryable=True,
            step=call.step,
        )
    if isinstance(exc, ReadTimeoutError):
        return ToolError(
            f"{what}: timed out reading from {_endpoint(call)}",
            error_kind="timeout",
            retryable=True,
            step=call.step,
        )
    if isinstance(exc, NoCredentialsError):
        return ToolError(
            f"{what}: no credential: give 'auth' naming an s3 credential",
            error_kind="s3",
            step=call.step,
            field="auth",
        )
    if isinstance(exc, ClientError):
        code = _code(exc)
        if code in _REFUSED:
            name = (call.credential or {}).get("name", "(unnamed)")
            return ToolError(
                f"{what}: credential '{name}' was refused ({code})",
                error_kind="auth",
                step=call.step,
                field="auth",
                details={"s3": {"code": code}},
            )
        if code in _MISSING:
            return ToolError(
                f"{what}: not found ({code})",
                error_kind="not_found",
                step=call.step,
                details={"s3": {"code": code}},
            )
        message = str(exc.response.get("Error", {}).get("Message", "")) or code
        return ToolError(
            f"{what}: {code}: {message}",
            error_kind="s3",
            step=call.step,
            retryable=code in ("SlowDown", "InternalError", "ServiceUnavailable"),
            details={"s3": {"code": code}},
        )
    return ToolError(f"{what}: {type(exc).__name__}: {exc}", error_kind="s3", step=call.step)


def _endpoint(call: Call) -> str:
    data = _credential_data(call)
    url = str(data.get("endpoint_url") or data.get("endpoint") or "https://s3.amazonaws.com")
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


_OPERATIONS = {
    "get": _get,
    "put": _put,
    "list": _list,
    "delete": _delete,
    "copy": _copy,
    "head": _head,
    "presign": _presign,
}

TOOL = S3Tool()
