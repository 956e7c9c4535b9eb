"""The http tool against a real HTTP server on 127.0.0.1 (DECISIONS 8, 14; REFERENCE §4.4, §9)."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from noetl.dsl.model import JSON
from noetl.errors import ToolConfigError, ToolError
from noetl.tools.base import Call, Services
from noetl.tools.http import TOOL

SECRET = "tok-Secret-4711"


class _Handler(BaseHTTPRequestHandler):
    release: threading.Event

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def do_PUT(self) -> None:
        self._route()

    def _route(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/json":
            self._send(200, json.dumps({"items": [1, 2], "ok": True}), "application/json")
        elif url.path == "/text":
            self._send(200, "hello there", "text/plain")
        elif url.path == "/number-text":
            self._send(200, "42", "text/plain")
        elif url.path == "/empty-json":
            self._send(200, "", "application/json")
        elif url.path.startswith("/status/"):
            code = int(url.path.rsplit("/", 1)[1])
            self._send(code, json.dumps({"error": code}), "application/json", {"Retry-After": "1"})
        elif url.path == "/redirect":
            self._send(302, "", "text/plain", {"Location": "/json"})
        elif url.path == "/slow":
            self.release.wait(30)
            self._send(200, "late", "text/plain")
        else:
            self._echo(url.query)

    def _echo(self, query: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        echo = {
            "method": self.command,
            "query": parse_qs(query),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
        }
        self._send(200, json.dumps(echo), "application/json")

    def _send(self, code: int, body: str, content_type: str, extra: Mapping[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    release = threading.Event()
    handler = type("Handler", (_Handler,), {"release": release})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    services = Services()
    yield services
    for value in services.extras.values():
        await value.aclose()


def call(
    services: Services,
    config: Mapping[str, JSON],
    *,
    credential: Mapping[str, Any] | None = None,
    timeout: float | None = None,
) -> Call:
    return Call("e1", "fetch", "fetch", "http", config, {}, credential, timeout, services)


async def run(services: Services, config: Mapping[str, JSON], **kw: Any) -> dict[str, Any]:
    result = await TOOL.run(call(services, config, **kw))
    assert isinstance(result, dict)
    return result


async def failure(services: Services, config: Mapping[str, JSON], **kw: Any) -> ToolError:
    with pytest.raises(ToolError) as caught:
        await TOOL.run(call(services, config, **kw))
    return caught.value


async def test_get_json_result_shape(services: Services, base_url: str) -> None:
    result = await run(services, {"url": f"{base_url}/json"})
    assert set(result) == {"status_code", "headers", "data", "body"}  # DECISIONS 8
    assert result["status_code"] == 200
    assert isinstance(result["body"], str) and json.loads(result["body"]) == result["data"]
    assert result["data"] == {"items": [1, 2], "ok": True}
    assert result["headers"]["content-type"] == "application/json"


async def test_text_body_is_text_unless_it_parses_as_json(services: Services, base_url: str) -> None:
    assert (await run(services, {"url": f"{base_url}/text"}))["data"] == "hello there"
    assert (await run(services, {"url": f"{base_url}/number-text"}))["data"] == 42
    assert (await run(services, {"url": f"{base_url}/empty-json"}))["data"] is None


async def test_method_query_and_headers_are_sent(services: Services, base_url: str) -> None:
    result = await run(
        services,
        {
            "method": "put",
            "url": f"{base_url}/echo",
            "params": {"q": "a b", "n": 3, "tags": ["x", "y"], "skip": None},
            "headers": {"X-Trace": "t-1", "X-Count": 2},
        },
    )
    echo = result["data"]
    assert echo["method"] == "PUT"
    assert echo["query"] == {"q": ["a b"], "n": ["3"], "tags": ["x", "y"]}
    assert echo["headers"]["x-trace"] == "t-1" and echo["headers"]["x-count"] == "2"


@pytest.mark.parametrize("field", ["json", "body", "data", "payload"])
async def test_map_bodies_are_sent_as_json(services: Services, base_url: str, field: str) -> None:
    sent: dict[str, JSON] = {"name": "O'Brien", "n": [1, 2]}
    echo = (await run(services, {"method": "POST", "url": f"{base_url}/echo", field: sent}))["data"]
    assert echo["headers"]["content-type"] == "application/json"
    assert json.loads(echo["body"]) == sent


async def test_string_body_is_raw_text_and_form_is_encoded(services: Services, base_url: str) -> None:
    raw = (await run(services, {"method": "POST", "url": f"{base_url}/echo", "body": "plain <text>"}))["data"]
    assert raw["body"] == "plain <text>" and "json" not in raw["headers"].get("content-type", "")
    form = (await run(services, {"method": "POST", "url": f"{base_url}/echo", "form": {"a": 1, "b": "x y"}}))[
        "data"
    ]
    assert form["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert parse_qs(form["body"]) == {"a": ["1"], "b": ["x y"]}


async def test_json_field_keeps_string_as_json(services: Services, base_url: str) -> None:
    echo = (await run(services, {"method": "POST", "url": f"{base_url}/echo", "json": "text"}))["data"]
    assert echo["body"] == '"text"' and echo["headers"]["content-type"] == "application/json"


async def test_two_bodies_are_a_config_error(services: Services, base_url: str) -> None:
    with pytest.raises(ToolConfigError, match="one body") as caught:
        await TOOL.run(call(services, {"url": f"{base_url}/echo", "json": {}, "data": {"a": 1}}))
    assert caught.value.field == "data"


async def test_legacy_endpoint_alias(services: Services, base_url: str) -> None:
    assert (await run(services, {"endpoint": f"{base_url}/json"}))["status_code"] == 200


async def test_non_2xx_is_http_error_with_result_as_data(services: Services, base_url: str) -> None:
    err = await failure(services, {"url": f"{base_url}/status/404"})
    assert err.error_kind == "http" and err.retryable is False
    assert err.message == f"HTTP 404 from GET {base_url}/status/404"
    assert err.details["http"]["status"] == 404  # type: ignore[index]
    assert err.details["http"]["headers"]["retry-after"] == "1"  # type: ignore[index]
    assert (
        isinstance(err.data, dict) and err.data["data"] == {"error": 404} and err.data["status_code"] == 404
    )
    assert err.step == "fetch"


@pytest.mark.parametrize("status", [408, 425, 429, 500, 503])
async def test_retryable_statuses(services: Services, base_url: str, status: int) -> None:
    err = await failure(services, {"url": f"{base_url}/status/{status}"})
    assert err.retryable is True and err.details["http"]["status"] == status  # type: ignore[index]


async def test_accept_status_makes_a_status_a_result(services: Services, base_url: str) -> None:
    result = await run(services, {"url": f"{base_url}/status/404", "accept_status": [404]})
    assert result["status_code"] == 404 and result["data"] == {"error": 404}
    err = await failure(services, {"url": f"{base_url}/status/503", "accept_status": [404]})
    assert err.details["http"]["status"] == 503  # type: ignore[index]


async def test_error_message_hides_query_and_user_info(services: Services, base_url: str) -> None:
    url = base_url.replace("http://", f"http://user:{SECRET}@") + f"/status/500?api_key={SECRET}"
    err = await failure(services, {"url": url})
    assert SECRET not in err.message and "/status/500" in err.message


async def test_redirects_followed_unless_disabled(services: Services, base_url: str) -> None:
    assert (await run(services, {"url": f"{base_url}/redirect"}))["data"] == {"items": [1, 2], "ok": True}
    result = await run(
        services, {"url": f"{base_url}/redirect", "follow_redirects": False, "accept_status": [302]}
    )
    assert result["status_code"] == 302 and result["headers"]["location"] == "/json"


async def test_slow_response_times_out(services: Services, base_url: str) -> None:
    err = await failure(services, {"url": f"{base_url}/slow", "timeout": 0.2})
    assert err.error_kind == "timeout" and err.retryable is True
    assert err.details == {"http": {"status": None}}
    err = await failure(services, {"url": f"{base_url}/slow", "timeout": {"connect": 1, "read": 0.2}})
    assert err.error_kind == "timeout"
    err = await failure(services, {"url": f"{base_url}/slow"}, timeout=0.2)
    assert err.error_kind == "timeout"


async def test_refused_connection_is_retryable_connection_error(services: Services) -> None:
    with socket.socket() as closed:  # bound but not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        err = await failure(services, {"url": f"http://127.0.0.1:{port}/x"})
    assert err.error_kind == "connection" and err.retryable is True
    assert err.details == {"http": {"status": None}} and f"127.0.0.1:{port}/x" in err.message


async def test_unsupported_scheme_is_config_error(services: Services) -> None:
    with pytest.raises(ToolConfigError) as caught:
        await TOOL.run(call(services, {"url": "ftp://127.0.0.1/x"}))
    assert caught.value.field == "url"


async def test_client_is_shared_through_services(services: Services, base_url: str) -> None:
    await run(services, {"url": f"{base_url}/json"})
    client = services.extras["http_client"]
    await run(services, {"url": f"{base_url}/text"})
    assert services.extras["http_client"] is client
    await run(services, {"url": f"{base_url}/text", "verify_ssl": False})
    assert services.extras["http_client_unverified"] is not client


@pytest.mark.parametrize(
    ("credential", "header", "expected"),
    [
        ({"type": "bearer", "data": {"token": SECRET}}, "authorization", f"Bearer {SECRET}"),
        (
            {"type": "basic", "data": {"username": "ann", "password": SECRET}},
            "authorization",
            "Basic " + base64.b64encode(f"ann:{SECRET}".encode()).decode(),
        ),
        ({"type": "api_key", "data": {"header": "X-Api-Key", "value": SECRET}}, "x-api-key", SECRET),
        ({"type": "header", "data": {"name": "X-Token", "key": SECRET}}, "x-token", SECRET),
    ],
)
async def test_credentials_add_their_header(
    services: Services, base_url: str, credential: dict[str, Any], header: str, expected: str
) -> None:
    echo = (await run(services, {"url": f"{base_url}/echo"}, credential=credential))["data"]
    assert echo["headers"][header] == expected


async def test_task_headers_win_over_credential(services: Services, base_url: str) -> None:
    credential = {"type": "bearer", "data": {"token": SECRET}}
    config: dict[str, JSON] = {"url": f"{base_url}/echo", "headers": {"Authorization": "Custom x"}}
    echo = (await run(services, config, credential=credential))["data"]
    assert echo["headers"]["authorization"] == "Custom x"


async def test_bad_credentials_are_config_errors_without_secrets(services: Services, base_url: str) -> None:
    for credential, words in (
        ({"type": "postgres", "data": {"db_password": SECRET}}, "postgres"),
        ({"type": "bearer", "data": {"password": SECRET}}, "'token'"),
        ({"type": "header", "data": {"value": SECRET}}, "'header'"),
    ):
        with pytest.raises(ToolConfigError) as caught:
            await TOOL.run(call(services, {"url": f"{base_url}/echo"}, credential=credential))
        assert words in caught.value.message and SECRET not in str(caught.value)
        assert caught.value.field == "auth"
