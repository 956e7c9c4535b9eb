"""Credential stores (file, memory, none), the playbook keychain and secret redaction (DECISIONS 22)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from noetl.errors import CredentialError, UsageError
from noetl.runtime.credentials import (
    FileCredentials,
    Keychain,
    MemoryCredentials,
    NoCredentials,
    keychain_names,
)
from noetl.runtime.redact import MASK, Redactor

SECRET = "pa55-Word-Zeta"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- FileCredentials -------------------------------------------------------------------------------------


async def test_yaml_map_file(tmp_path):
    path = write(
        tmp_path,
        "c.yaml",
        f"pg:\n  type: postgres\n  data: {{db_host: h, db_password: {SECRET}}}\napi:\n  data: {{token: t}}\n",
    )
    store = FileCredentials(path)
    assert await store.get("pg") == {"type": "postgres", "data": {"db_host": "h", "db_password": SECRET}}
    assert await store.get("api") == {"type": "generic", "data": {"token": "t"}}
    assert store.names() == ["api", "pg"]


async def test_json_list_file_in_the_server_import_format(tmp_path):
    entries = [
        {"name": "pg", "type": "postgres", "data": {"db_user": "u"}, "tags": ["prod"], "description": "d"}
    ]
    store = FileCredentials(write(tmp_path, "c.json", json.dumps(entries)))
    assert await store.get("pg") == {"type": "postgres", "data": {"db_user": "u"}}


async def test_returned_credentials_are_copies(tmp_path):
    store = FileCredentials(write(tmp_path, "c.yaml", "a: {type: t, data: {k: v}}\n"))
    first = await store.get("a")
    first["data"]["k"] = "changed"  # type: ignore[index]
    assert (await store.get("a"))["data"] == {"k": "v"}


async def test_missing_name_lists_known_names_but_no_values(tmp_path):
    path = write(
        tmp_path, "c.yaml", f"pg: {{type: postgres, data: {{db_password: {SECRET}}}}}\napi: {{data: {{}}}}\n"
    )
    with pytest.raises(CredentialError) as caught:
        await FileCredentials(path).get("nobody")
    message = str(caught.value)
    assert "'nobody'" in message and "known credentials: api, pg" in message and str(path) in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("pg:\n  type: postgres\n  data: [unclosed\n", 4, "invalid YAML"),
        ("ok: {type: t, data: {}}\npg:\n  type: postgres\n", 3, "'data' must be a map"),
        ("- {name: a, type: t, data: {}}\n- {type: t, data: {}}\n", 2, "needs a 'name'"),
        ("- {name: a, data: {}, secret: x}\n", 1, "unknown keys secret"),
        ("a: {type: t, data: {}}\na: {type: t, data: {}}\n", 2, "duplicate"),
        ("just text\n", None, "must hold a map"),
    ],
)
def test_malformed_file_is_a_usage_error_naming_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(UsageError) as caught:
        FileCredentials(path)
    error = caught.value
    assert words in str(error) and str(path) in str(error)
    if line is not None:
        assert error.location is not None and error.location.line == line


def test_unreadable_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot read credentials file"):
        FileCredentials(tmp_path / "absent.yaml")


async def test_empty_file_holds_no_credentials(tmp_path):
    store = FileCredentials(write(tmp_path, "empty.yaml", ""))
    with pytest.raises(CredentialError, match="no credentials are defined"):
        await store.get("x")


# ---- MemoryCredentials, NoCredentials -------------------------------------------------------------------


async def test_memory_credentials():
    store = MemoryCredentials({"a": {"type": "bearer", "data": {"token": "t"}}})
    store["b"] = {"data": {"k": 1}}
    assert "a" in store and len(store) == 2 and store.names() == ["a", "b"]
    assert await store.get("b") == {"type": "generic", "data": {"k": 1}}
    with pytest.raises(CredentialError, match="known credentials: a, b"):
        await store.get("c")
    with pytest.raises(CredentialError, match="'data' must be a map"):
        store["bad"] = {"type": "x"}


async def test_no_credentials_says_how_to_configure():
    with pytest.raises(CredentialError) as caught:
        await NoCredentials().get("pg")
    assert "'pg'" in str(caught.value)
    assert "--credentials FILE" in str(caught.value) and "NOETL_CREDENTIALS_FILE" in str(caught.value)


# ---- Keychain ---------------------------------------------------------------------------------------------


def test_keychain_names_found_in_templates():
    declared = ["a", "b", "c"]
    value = {"h": "Bearer {{ keychain.a.token }}", "l": ["{{ keychain['b'].x }}", "keychain.c plain text"]}
    assert keychain_names(value, declared) == {"a", "b"}
    assert keychain_names("{{ keychain.zzz.x }}", declared) == set()  # undeclared: left to the template
    assert keychain_names("{{ keychain[name].x }}", declared) == {"a", "b", "c"}  # dynamic: all of them
    assert keychain_names({"x": "{{ mykeychain }}"}, declared) == set()


async def test_keychain_kinds_and_nested_references():
    store = MemoryCredentials({"pg": {"type": "postgres", "data": {"db_password": SECRET}}})
    entries = [
        {"name": "db", "kind": "credential", "credential": "pg"},
        {
            "name": "conf",
            "kind": "static",
            "map": {"user": "{{ who }}", "key": "{{ keychain.db.db_password }}"},
        },
        {"name": "tok", "kind": "bearer", "token": "{{ keychain.conf.user }}-t"},
        {"name": "lit", "kind": "static", "data": {"k": 1}},
    ]
    keychain = Keychain(entries, store)
    context = {"who": "ada", "keychain": keychain.resolved}
    await keychain.resolve(["tok", "lit"], context)
    assert keychain.resolved["tok"] == {"token": "ada-t", "access_token": "ada-t"}
    assert keychain.resolved["conf"] == {"user": "ada", "key": SECRET}  # resolved on the way
    assert keychain.resolved["db"] == {"db_password": SECRET}
    assert keychain.resolved["lit"] == {"k": 1}
    assert await keychain.credential("tok", context) == {"type": "bearer", "data": keychain.resolved["tok"]}


async def test_keychain_errors():
    keychain = Keychain(
        [
            {"name": "o", "kind": "oauth2"},
            {"name": "v", "kind": "vault"},
            {"name": "self", "kind": "bearer", "token": "{{ keychain.self.token }}"},
            {"name": "missing", "kind": "credential", "credential": "nope"},
            {"name": "bad", "kind": "static", "map": "{{ undefined_thing }}"},
        ],
        MemoryCredentials(),
    )
    context = {"keychain": keychain.resolved}
    with pytest.raises(CredentialError, match=r"keychain entry 'o' of kind oauth2 needs 'endpoint'"):
        await keychain.resolve(["o"], context)
    with pytest.raises(CredentialError, match=r"keychain kind 'vault' .* not supported"):
        await keychain.resolve(["v"], context)
    with pytest.raises(CredentialError, match="refers to itself"):
        await keychain.resolve(["self"], context)
    with pytest.raises(CredentialError, match="'nope' not found"):
        await keychain.resolve(["missing"], context)
    with pytest.raises(CredentialError, match="keychain entry 'bad': undefined variable 'undefined_thing'"):
        await keychain.resolve(["bad"], context)


# ---- Redactor -------------------------------------------------------------------------------------------


def test_redactor_masks_secrets_everywhere_in_values_and_keys():
    redactor = Redactor()
    redactor.add_data(
        {"db_password": SECRET, "db_host": "localhost", "pin": 12345, "short": "ab", "flag": True}
    )
    value = {
        SECRET: f"x{SECRET}y",
        "list": ["localhost", {"deep": f"pin 12345 and {SECRET}"}, 12345],
        "same": "untouched",
    }
    assert redactor.redact(value) == {
        MASK: f"x{MASK}y",  # issue 10: a secret used as a key (an SQL column alias) is masked too
        "list": ["localhost", {"deep": f"pin {MASK} and {MASK}"}, 12345],
        "same": "untouched",
    }
    assert redactor.redact_text(f"token={SECRET}") == f"token={MASK}"


def test_redactor_prefers_the_longest_secret_and_shares_unchanged_parts():
    redactor = Redactor(["abc", "abcdef"])
    assert redactor.redact_text("abcdef abc") == f"{MASK} {MASK}"
    clean = {"a": ["x", {"b": "y"}]}
    assert redactor.redact(clean) is clean


def test_redactor_without_secrets_is_falsy_and_returns_values_as_they_are():
    redactor = Redactor(["ab"])  # too short to be treated as a secret
    value = {"a": "ab"}
    assert not redactor and redactor.redact(value) is value and redactor.redact_text("ab") == "ab"
