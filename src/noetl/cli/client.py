"""A small client for the NoETL server's HTTP API (the paths of DISTRIBUTED.md / REFERENCE §7).

One :class:`Client` per command, used as a context manager; each method is one request and returns
the decoded JSON answer. Failures become NoetlErrors at this edge, so the CLI prints one line:

* the server is out of reach -> :class:`ServerUnreachable` ("cannot reach the NoETL server at URL;
  start it with `noetl server start`");
* an error answer ``{"detail": {"reason", "code", ...}}`` -> the error of that kind, carrying the
  server's reason: an invalid playbook is a :class:`~noetl.errors.PlaybookError` with its line and
  step (exit 2), a bad request a :class:`~noetl.errors.UsageError` (exit 2), a missing thing
  :class:`NotFound`, a state conflict :class:`Conflict`, anything else :class:`ApiError`.

Errors added here (all exit 1)::

    NoetlError
    ├── ServerUnreachable   no connection to the server (refused, DNS, timeout)
    └── ApiError            the server answered with an error status
        ├── NotFound        404: no such execution, catalog entry or credential
        ├── Conflict        409: e.g. cancelling an execution that already finished
        └── Busy            429: the server's queue is full; ``retry_after`` says when to retry

``execute`` retries a 429 with backoff (the server's ``Retry-After``, doubling up to
:data:`MAX_BUSY_WAIT_SECONDS`), saying so on stderr, for up to :data:`BUSY_RETRIES` attempts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from noetl.errors import (
    CredentialError,
    Location,
    NoetlError,
    PlaybookError,
    TemplateError,
    UsageError,
)

if TYPE_CHECKING:
    import httpx

DEFAULT_SERVER_URL: Final = "http://127.0.0.1:8082"
REQUEST_TIMEOUT_SECONDS: Final = 30.0
BUSY_RETRIES: Final = 12
MAX_BUSY_WAIT_SECONDS: Final = 30.0

JSONObject = dict[str, Any]


class ServerUnreachable(NoetlError):
    """No connection to the NoETL server (refused, unknown host, timed out)."""

    @property
    def kind(self) -> str:
        return "unreachable"


class ApiError(NoetlError):
    """The server answered a request with an error; ``status`` and ``code`` say which."""

    def __init__(
        self, message: str, *, status: int, code: str, detail: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.detail = dict(detail or {})

    @property
    def kind(self) -> str:
        return self.code


class NotFound(ApiError):
    """404: the execution, catalog entry or credential named does not exist."""


class Conflict(ApiError):
    """409: the request contradicts the current state (``code`` says how, e.g. ``already_terminal``)."""


class Busy(ApiError):
    """429: the server refuses new work until its queue drains; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(message, status=429, code="busy", detail=detail)
        self.retry_after = retry_after


class Client:
    """Synchronous API client: ``with Client(url) as api: api.health()``."""

    def __init__(
        self,
        base_url: str = DEFAULT_SERVER_URL,
        *,
        timeout: float = REQUEST_TIMEOUT_SECONDS,
        gateway: str | None = None,
        api_key: str | None = None,
    ) -> None:
        import httpx

        if gateway is None and api_key is None:
            gateway, api_key = _global_gateway()
        self.gateway = bool(gateway)
        self.base_url = (gateway or base_url).rstrip("/")
        # A local server's token file may appear only once it has started (see _send).
        self._finds_token = not gateway and api_key is None
        if self._finds_token:
            api_key = service_token(self.base_url)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---- health and catalog -------------------------------------------------------------------------

    def health(self) -> JSONObject:
        return self._request("GET", "/health")

    def register(self, content: str, kind: str = "Playbook") -> JSONObject:
        """``{path, version, catalog_id, kind, ...}`` of the new catalog entry."""
        return self._request(
            "POST", "/api/catalog/register", json={"content": content, "resource_type": kind}
        )

    def catalog(self, *, kind: str | None = None, path: str | None = None) -> list[JSONObject]:
        body = {"resource_type": kind, "path": path}
        entries: list[JSONObject] = self._request("POST", "/api/catalog/list", json=body)["entries"]
        return entries

    def catalog_entry(
        self, *, path: str | None = None, version: int | None = None, catalog_id: str | None = None
    ) -> JSONObject:
        body: JSONObject = {"path": path, "version": version if version is not None else "latest"}
        if catalog_id is not None:
            body = {"catalog_id": catalog_id}
        return self._request("POST", "/api/catalog/resource", json=body)

    # ---- executions ---------------------------------------------------------------------------------

    def execute(
        self,
        *,
        path: str | None = None,
        catalog_id: str | None = None,
        version: int | None = None,
        payload: Mapping[str, Any] | None = None,
        priority: int | None = None,
    ) -> JSONObject:
        """``{execution_id, status, ...}`` of the execution just started (429s retried, see above)."""
        body: JSONObject = {"payload": dict(payload or {})}
        if catalog_id is not None:
            body["catalog_id"] = catalog_id
        else:
            body["path"] = path
            body["version"] = version if version is not None else "latest"
        if priority is not None:
            body["priority"] = priority
        for attempt in range(1, BUSY_RETRIES + 1):
            try:
                return self._request("POST", "/api/execute", json=body)
            except Busy as busy:
                if attempt == BUSY_RETRIES:
                    raise
                wait = min(max(busy.retry_after, 0.1) * 2 ** (attempt - 1), MAX_BUSY_WAIT_SECONDS)
                _say(f"noetl: server busy ({busy}); retrying in {wait:g} s (attempt {attempt + 1})")
                time.sleep(wait)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> JSONObject:
        """One request to an API path (for commands without a method of their own here)."""
        return self._request(method, path, json=json, params=params)

    def executions(
        self,
        *,
        status: str | None = None,
        path: str | None = None,
        parent: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[JSONObject]:
        params = _params(status=status, path=path, parent_execution_id=parent, limit=limit, offset=offset)
        found: list[JSONObject] = self._request("GET", "/api/executions", params=params)["executions"]
        return found

    def execution(self, execution_id: str) -> JSONObject:
        """The execution's summary (no events)."""
        return self._request("GET", f"/api/executions/{execution_id}", params={"include_events": "false"})

    def status(self, execution_id: str) -> JSONObject:
        return self._request("GET", f"/api/executions/{execution_id}/status")

    def events(
        self, execution_id: str, *, since: int = 0, limit: int = 500, event_type: str | None = None
    ) -> JSONObject:
        """One page: ``{events, next_since_event_id, has_more}``."""
        params = _params(since_event_id=since, limit=limit, event_type=event_type)
        return self._request("GET", f"/api/executions/{execution_id}/events", params=params)

    def cancel(self, execution_id: str, *, reason: str | None = None, cascade: bool = True) -> JSONObject:
        body = {"reason": reason, "cascade": cascade}
        return self._request("POST", f"/api/executions/{execution_id}/cancel", json=body)

    def workers(self) -> list[JSONObject]:
        """Registered workers: ``{worker_id, name, pools, status, capacity, heartbeat_age, ...}``."""
        found: list[JSONObject] = self._request("GET", "/api/worker/pools")["workers"]
        return found

    # ---- credentials --------------------------------------------------------------------------------

    def put_credential(
        self,
        name: str,
        kind: str,
        data: Mapping[str, Any],
        *,
        description: str | None = None,
        tags: list[str] | None = None,
        allow_paths: list[str] | None = None,
    ) -> JSONObject:
        body = {"name": name, "type": kind, "data": dict(data), "description": description, "tags": tags}
        if allow_paths:
            body["allow_paths"] = allow_paths
        return self._request("POST", "/api/credentials", json=body)

    def credentials(self, *, kind: str | None = None, query: str | None = None) -> list[JSONObject]:
        found: list[JSONObject] = self._request(
            "GET", "/api/credentials", params=_params(type=kind, q=query)
        )["credentials"]
        return found

    def credential(self, name: str, *, include_data: bool = False) -> JSONObject:
        params = {"include_data": "true" if include_data else "false"}
        return self._request("GET", f"/api/credentials/{_segment(name)}", params=params)

    def delete_credential(self, name: str) -> JSONObject:
        return self._request("DELETE", f"/api/credentials/{_segment(name)}")

    # ---- transport ----------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
    ) -> JSONObject:
        import httpx

        if self.gateway and path.startswith("/api/"):
            path = "/noetl/" + path.removeprefix("/api/")  # the gateway's public prefix
        try:
            response = self._send(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            raise ServerUnreachable(
                f"cannot reach the NoETL server at {self.base_url}; start it with `noetl server start` "
                f"or point NOETL_SERVER_URL at it ({_cause(exc)})"
            ) from None
        if response.is_error:
            raise error_from(response)
        body = _decoded(response)
        if not isinstance(body, dict):
            raise ApiError(
                f"{method} {path}: expected a JSON object, got {type(body).__name__}",
                status=response.status_code,
                code="bad_response",
            )
        return body

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None,
        params: Mapping[str, str | int] | None,
    ) -> httpx.Response:
        """One request; a refusal by a server still starting on this machine is waited out."""
        import os

        import httpx

        from noetl.cli import starting
        from noetl.cli.admin import data_dir

        def attempt() -> httpx.Response:
            if self._finds_token and "Authorization" not in self._http.headers:
                token = service_token(self.base_url)  # written by a server that was still starting
                if token:
                    self._http.headers["Authorization"] = f"Bearer {token}"
            return self._http.request(method, path, json=json, params=params)

        return starting.patiently(
            attempt,
            lambda exc: isinstance(exc, httpx.ConnectError),
            self.base_url,
            data_dir(os.environ.get("NOETL_DATA_DIR")),
        )


def service_token(server_url: str) -> str | None:
    """The token to send to the server itself: ``NOETL_SERVICE_TOKEN``, else - for a server on
    this machine - the ``service.token`` it created in the data directory (``NOETL_DATA_DIR``)."""
    import os
    from urllib.parse import urlsplit

    from noetl.cli.admin import data_dir
    from noetl.store import servicetoken

    configured = os.environ.get("NOETL_SERVICE_TOKEN")
    if configured:
        return configured
    if not _loopback(urlsplit(server_url).hostname or ""):
        return None  # never hand this machine's token to another host
    return servicetoken.read(data_dir(os.environ.get("NOETL_DATA_DIR")))


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _global_gateway() -> tuple[str | None, str | None]:
    """``noetl --gateway URL --api-key KEY ...`` (or NOETL_GATEWAY_URL / NOETL_API_KEY, read by
    click): every server command of this invocation goes through the gateway."""
    import click

    context = click.get_current_context(silent=True)
    if context is None:
        return None, None
    params = context.find_root().params
    return params.get("gateway"), params.get("api_key")


def error_from(response: httpx.Response) -> NoetlError:
    """The NoetlError for an error answer, carrying the server's reason and context."""
    detail = _detail(response)
    reason = str(detail.get("reason") or detail.get("message") or response.reason_phrase)
    code = str(detail.get("code") or f"http_{response.status_code}")
    status = response.status_code
    if code == "validation":
        return _playbook_error(detail, reason)
    if code == "usage" or code == "invalid_request" or status == 400:
        return UsageError(reason)
    if code == "credential":
        return CredentialError(reason)
    if code == "template":
        return TemplateError(reason)
    if status == 404:
        return NotFound(reason, status=status, code=code, detail=detail)
    if status == 409:
        return Conflict(reason, status=status, code=code, detail=detail)
    if status == 429:
        return Busy(reason, retry_after=_retry_after(response), detail=detail)
    if status in (401, 403):
        return ApiError(f"access refused ({status}): {reason}", status=status, code=code, detail=detail)
    return ApiError(f"server error {status}: {reason}", status=status, code=code, detail=detail)


def _playbook_error(detail: Mapping[str, Any], reason: str) -> PlaybookError:
    """The server's PlaybookError rebuilt, so the CLI can put the user's file name on it."""
    message = detail.get("message")
    if not isinstance(message, str):
        return PlaybookError(reason)
    line, column = detail.get("line"), detail.get("column")
    location = None
    if detail.get("file") is not None or line is not None:
        location = Location(
            file=detail.get("file"),
            line=line if isinstance(line, int) else None,
            column=column if isinstance(column, int) else None,
        )
    step, field = detail.get("step"), detail.get("field")
    return PlaybookError(
        message,
        location=location,
        step=step if isinstance(step, str) else None,
        field=field if isinstance(field, str) else None,
    )


def _retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("Retry-After", "1"))
    except ValueError:
        return 1.0


def _say(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def _detail(response: httpx.Response) -> JSONObject:
    try:
        body = response.json()
    except ValueError:
        return {"reason": response.text.strip()[:500] or response.reason_phrase}
    if isinstance(body, dict):
        inner = body.get("detail", body)
        if isinstance(inner, dict):
            return inner
        if isinstance(inner, str):
            return {"reason": inner}
    return {"reason": str(body)[:500]}


def _decoded(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        raise ApiError(
            f"the server's answer is not JSON: {response.text[:200]!r}",
            status=response.status_code,
            code="bad_response",
        ) from None


def _params(**values: str | int | None) -> dict[str, str | int]:
    return {key: value for key, value in values.items() if value is not None}


def _segment(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _cause(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.split("] ", 1)[-1]  # "[Errno 111] Connection refused" -> "Connection refused"
