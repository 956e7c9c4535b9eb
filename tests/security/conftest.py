"""A secured cluster for the security tests: server (service token, fixed key), one worker, the
gateway in front, and small loopback helpers started by the tests themselves - a JWKS server for an
external identity provider, an OAuth2 token server, and an HTTP server that echoes what it got.

Everything runs as real processes or real sockets on 127.0.0.1; nothing is mocked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from noetl.store import crypto
from support.cluster import Cluster, free_port, running_cluster, spawn, wait_until

SECRET = "Zq7-planted-S3cret-value-991"
SERVICE_TOKEN = "service-token-for-tests-5b1e"
JWT_SECRET = "hs256-shared-secret-for-the-gateway-tests"


# ---- small loopback servers -------------------------------------------------------------------------


@dataclass
class Loopback:
    url: str
    hits: list[dict[str, Any]] = field(default_factory=list)


def serve(
    handle: Callable[[BaseHTTPRequestHandler, Loopback], tuple[int, dict[str, Any]]],
) -> Iterator[Loopback]:
    """A threaded HTTP server on a free loopback port; ``handle`` answers (status, JSON body)."""
    port = free_port()
    state = Loopback(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            state.hits.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status, payload = handle(self, state)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class Keys:
    rsa: rsa.RSAPrivateKey
    ec: ec.EllipticCurvePrivateKey
    stranger: rsa.RSAPrivateKey


@pytest.fixture(scope="session")
def signing_keys() -> Keys:
    return Keys(
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec.generate_private_key(ec.SECP256R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@pytest.fixture(scope="module")
def jwks_server(signing_keys: Keys) -> Iterator[Loopback]:
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_keys.rsa.public_key()))
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(signing_keys.ec.public_key()))
    rsa_jwk.update(kid="rsa-1", use="sig", alg="RS256")
    ec_jwk.update(kid="ec-1", use="sig", alg="ES256")
    keys = {"keys": [rsa_jwk, ec_jwk]}
    yield from serve(lambda _handler, _state: (200, keys))


@pytest.fixture(scope="module")
def echo_server() -> Iterator[Loopback]:
    """Answers 500 with everything it received - an API that echoes the caller's secrets back."""
    yield from serve(lambda _h, state: (500, {"error": "boom", "you_sent": state.hits[-1]}))


# ---- the secured cluster ----------------------------------------------------------------------------


@dataclass
class Secured:
    cluster: Cluster
    gateway_url: str
    gateway: Any
    env: dict[str, str]
    root: Path

    def noetl(
        self, *args: str, check: bool = True, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``noetl`` CLI as a user would, with this cluster's environment."""
        done = subprocess.run(
            [sys.executable, "-m", "noetl", *args],
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.root,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"noetl {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def key(self, name: str, role: str, *paths: str) -> str:
        args = ["token", "create", "--name", name, "--role", role, "--json"]
        for path in paths:
            args += ["--path", path]
        return str(json.loads(self.noetl(*args).stdout)["key"])

    def gw(self, method: str, path: str, key: str | None = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers.update(kw.pop("headers", {}))
        return httpx.request(method, f"{self.gateway_url}/noetl/{path}", headers=headers, timeout=30, **kw)

    def direct(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """A request straight to the server (``/api/...``) with the service token, as the gateway sends."""
        headers = {"Authorization": f"Bearer {SERVICE_TOKEN}", **kw.pop("headers", {})}
        return httpx.request(method, f"{self.cluster.url}{path}", headers=headers, timeout=30, **kw)

    def logs(self) -> str:
        return "\n".join(p.output() for p in [*self.cluster.processes, self.gateway])


@pytest.fixture(scope="module")
def secured(
    pg_database: str, tmp_path_factory: pytest.TempPathFactory, jwks_server: Loopback
) -> Iterator[Secured]:
    root = tmp_path_factory.mktemp("secured")
    env = {
        "NOETL_SERVICE_TOKEN": SERVICE_TOKEN,
        "NOETL_ENCRYPTION_KEY": crypto.new_key(),
        "NOETL_LOG_LEVEL": "info",
        "NOETL_GATEWAY_JWT_SECRET": JWT_SECRET,
        "NOETL_GATEWAY_JWKS_URL": jwks_server.url + "/jwks.json",
        "NOETL_GATEWAY_RATE": "2",
        "NOETL_GATEWAY_BURST": "25",
        "NOETL_GATEWAY_MAX_BODY_BYTES": "65536",
        "NOETL_SERVER_MAX_BODY_BYTES": "131072",
    }
    with running_cluster(pg_database, root, workers=1, env=env, insecure_loopback=False) as cluster:
        port = free_port()
        gateway = spawn("gateway", ["gateway", "start", "--port", str(port)], cluster.env, root)
        cluster.processes.append(gateway)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if gateway.popen.poll() is not None:
                raise AssertionError(f"the gateway exited:\n{gateway.output()}")
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(up, "the gateway's /health")
        yield Secured(cluster, url, gateway, dict(cluster.env), root)
