"""The ``http`` tool: one HTTP request; the result is ``{status_code, headers, data, body}`` (DECISIONS 8).

Fields (REFERENCE §4.4):

* ``method`` (default GET), ``url`` (legacy alias ``endpoint``), ``headers``, ``params`` (query);
* one body: ``json`` (any JSON), or ``body`` / ``data`` / ``payload`` (a map or list is sent as
  JSON, a string as raw text), or ``form`` (a map sent form-encoded);
* ``timeout`` / ``timeout_seconds`` (seconds, or ``{connect, read}``), ``follow_redirects``
  (default true), ``verify_ssl`` (default true), ``accept_status`` (statuses that are not errors,
  besides 2xx; the runtime also passes the task's ``spec.accept_status`` here);
* ``output_select`` (upstream's choice of where a large response is stored, e.g. ``{strategy:
  size_threshold, threshold_kb: 100}``): accepted and not used; results here stay in the event log,
  and large loops keep theirs in the result store.

``data`` is the parsed JSON body when the body parses as JSON, else the text (None for an empty
JSON body); ``body`` is the raw text of the response (DECISIONS 8: upstream has both). A status
outside 2xx and ``accept_status`` raises an ``http`` error (retryable for
408, 425, 429 and 5xx) whose data is the result and whose details are ``{"http": {status,
headers}}``. Failing to connect or timing out raises ``connection`` / ``timeout`` (retryable).

The credential (``auth``) adds a header: ``bearer`` ``{token}``, ``basic`` ``{username,
password}``, ``api_key`` / ``header`` ``{header or name, value or key}``. Headers written in the
task win over the credential's.

One ``httpx.AsyncClient`` per runtime is kept in ``Services.extras`` (the runtime closes it).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError, ToolError
from noetl.tools import fields
from noetl.tools.base import ANY_JSON, Call, Services

# httpx logs every request's full URL at INFO ("HTTP Request: GET https://...?token=..."): a URL built
# from a secret would reach the runtime's log unmasked. Only its warnings are let through.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(max(logging.WARNING, logging.getLogger(_name).level))

if TYPE_CHECKING:
    import httpx

_BODY_FIELDS = ("json", "body", "data", "payload", "form")
_RETRYABLE_STATUSES = frozenset({408, 425, 429})
_DEFAULT_TIMEOUT = 30.0
_DEFAULT_CONNECT_TIMEOUT = 10.0


class HttpTool:
    """Sends one request with httpx and returns the response as JSON."""

    kind = "http"
    config_fields: Mapping[str, tuple[type, ...]] = {
        "method": (str,),
        "url": (str,),
        "endpoint": (str,),
        "headers": (dict, type(None)),
        "params": (dict, type(None)),
        "json": ANY_JSON,
        "body": ANY_JSON,
        "data": ANY_JSON,
        "payload": ANY_JSON,
        "form": (dict, type(None)),
        "follow_redirects": (bool,),
        "verify_ssl": (bool,),
        "accept_status": (list, int),
        "output_select": (dict, type(None)),
        **fields.TIMEOUTS,
    }
    required_fields: tuple[tuple[str, ...], ...] = (("url", "endpoint"),)

    async def run(self, call: Call) -> JSON:
        import httpx

        config = call.config
        method = str(config.get("method") or "GET").upper()
        url = _url(call)
        client = _client(call.services, verify=fields.flag(config.get("verify_ssl"), default=True))
        try:
            response = await client.request(
                method,
                httpx.URL(url).copy_merge_params(_query(config.get("params"))),
                headers={
                    **call.services.trace_headers,
                    **_credential_headers(call),
                    **_headers(config.get("headers")),
                },
                timeout=_timeout(call),
                follow_redirects=fields.flag(config.get("follow_redirects"), default=True),
                **_body(call),
            )
        except httpx.TimeoutException as exc:
            raise _transport_error(
                "timeout", f"timed out ({type(exc).__name__})", method, url, call
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ToolConfigError(f"invalid url for {method}: {exc}", step=call.step, field="url") from None
        except httpx.TransportError as exc:
            raise _transport_error("connection", f"could not connect: {exc}", method, url, call) from None
        result = _result(response)
        if not _accepted(response.status_code, config.get("accept_status")):
            raise _status_error(response, result, method, call)
        return result


def _url(call: Call) -> str:
    url = call.config.get("url") or call.config.get("endpoint")
    if not isinstance(url, str) or not url:
        raise ToolConfigError("an http task needs a non-empty 'url'", step=call.step, field="url")
    return url


def _client(services: Services, *, verify: bool) -> httpx.AsyncClient:
    """The runtime's shared client (one per ``verify`` setting), created on first use."""
    import httpx

    key = "http_client" if verify else "http_client_unverified"
    client = services.extras.get(key)
    if not isinstance(client, httpx.AsyncClient) or client.is_closed:
        client = httpx.AsyncClient(verify=verify)
        services.extras[key] = client
    return client


def _headers(value: JSON) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(name): _text(item) for name, item in value.items() if item is not None}


def _query(value: JSON) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    return {
        str(name): [_text(v) for v in item] if isinstance(item, list) else _text(item)
        for name, item in value.items()
        if item is not None
    }


def _text(value: JSON) -> str:
    """A header or query value as text: strings verbatim, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _body(call: Call) -> dict[str, Any]:
    """httpx keyword arguments for the task's one body field."""
    given = [name for name in _BODY_FIELDS if call.config.get(name) is not None]
    if len(given) > 1:
        names = " and ".join(f"'{name}'" for name in given)
        raise ToolConfigError(f"an http task takes one body, got {names}", step=call.step, field=given[1])
    if not given:
        return {}
    name, value = given[0], call.config[given[0]]
    if name == "form":
        return {"data": _headers(value)}
    if name != "json" and isinstance(value, str):
        return {"content": value.encode()}
    return {"json": value}


def _timeout(call: Call) -> httpx.Timeout:
    import httpx

    configured = call.config.get("timeout")
    overall = fields.timeout(call) or _DEFAULT_TIMEOUT
    if isinstance(configured, dict):
        connect = fields.number(configured.get("connect"))
        read = fields.number(configured.get("read"))
        return httpx.Timeout(min(read or overall, overall), connect=min(connect or overall, overall))
    return httpx.Timeout(overall, connect=min(_DEFAULT_CONNECT_TIMEOUT, overall))


def _credential_headers(call: Call) -> dict[str, str]:
    """The header that the task's credential adds, by credential type."""
    credential = call.credential
    if credential is None:
        return {}
    kind = str(credential.get("type") or "").lower()
    data = credential.get("data") or {}
    if kind in ("bearer", "token"):
        return {"Authorization": f"Bearer {_secret(data, kind, call, 'token', 'access_token')}"}
    if kind == "basic":
        user = _secret(data, kind, call, "username", "user")
        password = _secret(data, kind, call, "password")
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    if kind in ("api_key", "header"):
        name = data.get("header") or data.get("name") or ("X-API-Key" if kind == "api_key" else None)
        if not name:
            raise _credential_error(kind, "'header' (or 'name')", call)
        return {str(name): _secret(data, kind, call, "value", "key", "api_key")}
    raise ToolConfigError(
        f"a credential of type '{kind or '(none)'}' cannot authenticate an http task; "
        "use bearer, basic, api_key or header",
        step=call.step,
        field="auth",
    )


def _secret(data: Mapping[str, Any], kind: str, call: Call, *names: str) -> str:
    for name in names:
        value = data.get(name)
        if value not in (None, ""):
            return str(value)
    raise _credential_error(kind, " or ".join(f"'{name}'" for name in names), call)


def _credential_error(kind: str, wanted: str, call: Call) -> ToolConfigError:
    return ToolConfigError(
        f"the {kind} credential of this http task has no {wanted} in its data",
        step=call.step,
        field="auth",
    )


def _result(response: httpx.Response) -> dict[str, JSON]:
    data = _data(response)
    return {
        "status_code": response.status_code,
        "headers": dict(response.headers.items()),
        "data": data,
        "body": response.text,
    }


def _data(response: httpx.Response) -> JSON:
    text = response.text
    if not text.strip():
        return None if _is_json(response) else text
    try:
        parsed: JSON = json.loads(text)
    except ValueError:
        return text
    return parsed


def _is_json(response: httpx.Response) -> bool:
    media = str(response.headers.get("content-type", "")).split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _accepted(status: int, accept: JSON) -> bool:
    if 200 <= status < 300:
        return True
    accepted = accept if isinstance(accept, list) else [accept]
    return any(fields.number(code) == status for code in accepted)


def _status_error(response: httpx.Response, result: dict[str, JSON], method: str, call: Call) -> ToolError:
    status = response.status_code
    return ToolError(
        f"HTTP {status} from {method} {_shown(response.request.url)}",
        error_kind="http",
        retryable=status in _RETRYABLE_STATUSES or status >= 500,
        details={"http": {"status": status, "headers": result["headers"]}},
        data=result,
        step=call.step,
    )


def _transport_error(kind: str, reason: str, method: str, url: str, call: Call) -> ToolError:
    import httpx

    return ToolError(
        f"{method} {_shown(httpx.URL(url))}: {reason}",
        error_kind=kind,
        retryable=True,
        details={"http": {"status": None}},
        step=call.step,
    )


def _shown(url: httpx.URL) -> str:
    """The URL without user info, query or fragment: those may carry secrets."""
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}"


TOOL = HttpTool()
