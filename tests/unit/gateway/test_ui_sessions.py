"""The gateway's UI sessions as pure objects: ids, expiry, CSRF and origin checks."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from noetl.gateway import ui


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _request(method: str, headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request(
        {"type": "http", "method": method, "path": "/noetl/execute", "headers": raw, "query_string": b""}
    )


def test_a_session_is_found_by_its_id_only_and_keeps_no_id() -> None:
    sessions = ui.Sessions()
    session_id, session = sessions.create("noetl_key")
    assert sessions.get(session_id) is session
    assert sessions.get(session_id + "x") is None
    assert sessions.get(None) is None
    assert session_id not in repr(sessions._by_digest)  # stored by digest
    assert len(session_id) >= 43 and len(session.csrf) >= 43


def test_a_session_expires_when_idle_and_at_its_maximum_age() -> None:
    clock = Clock()
    sessions = ui.Sessions(clock)
    idle_id, _ = sessions.create("a")
    busy_id, _ = sessions.create("b")
    for _ in range(3):  # used every 7 hours (never idle for 8): alive at 7, 14 and 21 hours
        clock.now += 7 * 3600
        assert sessions.get(busy_id) is not None
    assert sessions.get(idle_id) is None  # idle for 21 hours
    clock.now += 7 * 3600
    assert sessions.get(busy_id) is None  # 28 hours old: past the maximum age


def test_sign_out_drops_the_session() -> None:
    sessions = ui.Sessions()
    session_id, _ = sessions.create("a")
    sessions.drop(session_id)
    assert sessions.get(session_id) is None


def test_actions_need_the_csrf_token_and_this_origin() -> None:
    _, session = ui.Sessions().create("a")
    here = {"host": "gw.example:8080"}
    ui.check_action(_request("GET", here), session)  # reads need no token
    ui.check_action(_request("POST", {**here, "x-csrf-token": session.csrf}), session)
    with pytest.raises(ui.SessionRefused, match="CSRF token"):
        ui.check_action(_request("POST", here), session)
    with pytest.raises(ui.SessionRefused, match="CSRF token"):
        ui.check_action(_request("POST", {**here, "x-csrf-token": "guess"}), session)
    evil = {**here, "x-csrf-token": session.csrf, "origin": "https://evil.example"}
    with pytest.raises(ui.SessionRefused, match="cross-site"):
        ui.check_action(_request("POST", evil), session)
    same = {**here, "x-csrf-token": session.csrf, "origin": "http://gw.example:8080"}
    ui.check_action(_request("POST", same), session)


def test_a_request_with_an_authorization_header_is_not_a_session_request() -> None:
    sessions = ui.Sessions()
    session_id, session = sessions.create("a")
    cookie = {"cookie": f"{ui.COOKIE}={session_id}"}
    assert ui.session_of(_request("GET", cookie), sessions) is session
    assert ui.session_of(_request("GET", {**cookie, "authorization": "Bearer x"}), sessions) is None


def test_the_credential_must_be_a_non_empty_string() -> None:
    assert ui.credential_from({"credential": " noetl_k "}) == "noetl_k"
    for bad in ({}, {"credential": ""}, {"credential": 3}, [], {"credential": "x" * 20000}):
        with pytest.raises(ui.SessionRefused):
            ui.credential_from(bad)
