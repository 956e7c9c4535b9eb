"""The redactor follows a secret into its derived forms, map keys and the fields that carry it."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

from noetl.runtime.redact import MASK, Redactor

SECRET = 'pa ss/w\u00f6rd"x'


def test_derived_forms_are_masked() -> None:
    redactor = Redactor()
    redactor.add_data({"username": "alice", "password": SECRET})
    for form in (
        quote(SECRET, safe=""),
        quote_plus(SECRET),
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
        base64.b64encode(SECRET.encode()).decode(),
        base64.b64encode(f"alice:{SECRET}".encode()).decode(),
    ):
        assert redactor.redact_text(f"<{form}>") == f"<{MASK}>", form


def test_keys_holding_a_secret_are_masked_without_losing_entries() -> None:
    redactor = Redactor(["s3cret-key"])
    value = {"s3cret-key": 1, "x-s3cret-key": 2, "plain": {"s3cret-key": 3}}
    assert redactor.redact(value) == {MASK: 1, f"x-{MASK}": 2, "plain": {MASK: 3}}
    collided = Redactor(["aaa", "bbb"]).redact({"aaa": 1, "bbb": 2})
    assert collided == {MASK: 1, f"{MASK}#2": 2}


def test_url_endpoint_and_header_fields_that_carry_credentials() -> None:
    redactor = Redactor()
    redactor.add_data(
        {
            "url": "https://hooks.example/services/T0KEN-path?key=qkey-123",
            "endpoint": "https://api.example.com",
            "header": "X-Api-Key",
            "headers": {"Authorization": "Bearer hdr-tok-9"},
        }
    )
    text = "POST https://hooks.example/services/T0KEN-path key=qkey-123 Bearer hdr-tok-9 X-Api-Key api.example.com"
    masked = redactor.redact_text(text)
    assert "T0KEN-path" not in masked and "qkey-123" not in masked and "hdr-tok-9" not in masked
    assert "X-Api-Key" in masked and "api.example.com" in masked  # a header name, a bare host: public
