"""Input schemas derived from workload, refined by ``# ui:`` hints and ``metadata.input_schema``."""

from __future__ import annotations

import textwrap

import pytest

from noetl.errors import PlaybookError
from noetl.runtime import inputs, loader

TEXT = textwrap.dedent(
    """\
    apiVersion: noetl.io/v2
    kind: Playbook
    metadata:
      name: report
      description: Builds the report
      input_schema:
        required: [region]
        properties:
          limit: {minimum: 1, maximum: 100, description: Rows per page}
    workload:
      region: eu          # ui:enum=[eu, us, "apac"]
      limit: 10
      ratio: 0.5
      dry_run: false
      token: "tok-default-77"  # ui:secret
      tags: [a]
      nested:
        region: x         # ui:secret
      anything: null      # ui:description=Any value at all
    workflow:
      - step: start
        tool: {kind: noop}
    """
)


def schema() -> dict:
    return inputs.input_schema(loader.parse(TEXT), TEXT)


def test_types_come_from_the_defaults() -> None:
    props = schema()["properties"]
    assert props["limit"]["type"] == "number" and props["limit"]["default"] == 10
    assert props["ratio"]["type"] == "number"
    assert props["dry_run"]["type"] == "boolean"
    assert props["tags"]["type"] == "array" and props["nested"]["type"] == "object"
    assert "type" not in props["anything"]


def test_comment_hints_refine_the_schema_only_for_top_level_keys() -> None:
    props = schema()["properties"]
    assert props["region"]["enum"] == ["eu", "us", "apac"]
    assert props["token"]["writeOnly"] is True and props["token"]["format"] == "password"
    assert "tok-default-77" not in str(schema()) and "default" not in props["token"]
    assert props["anything"]["description"] == "Any value at all"
    assert "writeOnly" not in props["region"]  # the nested 'region: x  # ui:secret' is not the top-level key


def test_explicit_schema_refines_the_derived_one() -> None:
    s = schema()
    assert s["required"] == ["region"]
    assert s["properties"]["limit"] == {
        "default": 10,
        "type": "number",
        "minimum": 1,
        "maximum": 100,
        "description": "Rows per page",
    }
    assert s["title"] == "report" and s["description"] == "Builds the report"


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        ({"limit": "ten"}, "limit", "'ten' is not of type 'number'"),
        ({"limit": 500}, "limit", "500 is greater than the maximum of 100"),
        ({"region": "mars"}, "region", "'mars' is not one of"),
        ({"dry_run": "yes"}, "dry_run", "not of type 'boolean'"),
    ],
)
def test_payload_errors_name_the_field(payload: dict, field: str, words: str) -> None:
    with pytest.raises(inputs.PayloadError) as caught:
        inputs.validate_payload(loader.parse(TEXT), payload, TEXT)
    assert caught.value.field == field and words in caught.value.message
    assert caught.value.http_status == 422


def test_a_secret_value_is_never_echoed() -> None:
    with pytest.raises(inputs.PayloadError) as caught:
        inputs.validate_payload(loader.parse(TEXT), {"token": 12345678}, TEXT)
    assert caught.value.field == "token" and "12345678" not in caught.value.message


def test_fitting_payloads_and_unknown_keys_pass() -> None:
    playbook = loader.parse(TEXT)
    inputs.validate_payload(playbook, {"limit": 20, "region": "us", "extra": {"x": 1}, "anything": [1]}, TEXT)
    inputs.validate_payload(playbook, None, TEXT)


def test_additional_properties_false_rejects_unknown_keys() -> None:
    text = TEXT.replace("required: [region]", "required: [region]\n    additionalProperties: false")
    with pytest.raises(inputs.PayloadError) as caught:
        inputs.validate_payload(loader.parse(text), {"limitt": 3}, text)
    assert caught.value.field == "limitt"


def test_an_invalid_explicit_schema_is_a_load_error() -> None:
    text = TEXT.replace("required: [region]", "required: region")
    with pytest.raises(PlaybookError) as caught:
        loader.parse(text)
    assert caught.value.field == "metadata.input_schema" and "not a valid JSON Schema" in caught.value.message


def test_ui_fields_have_upstreams_shape() -> None:
    fields = {f["name"]: f for f in inputs.ui_fields(loader.parse(TEXT), TEXT)}
    assert list(fields) == ["region", "limit", "ratio", "dry_run", "token", "tags", "nested", "anything"]
    assert fields["region"]["kind"] == "enum" and fields["region"]["options"] == ["eu", "us", "apac"]
    assert fields["token"]["secret"] is True and fields["token"]["kind"] == "string"
    assert fields["token"]["default"] is None  # the secret default is not served
    assert fields["limit"]["description"] == "Rows per page" and fields["limit"]["kind"] == "number"
    assert fields["nested"]["children"][0]["name"] == "region"
    assert fields["anything"]["kind"] == "null" and fields["anything"]["description"] == "Any value at all"
    assert set(fields["ratio"]) == {
        "name",
        "kind",
        "default",
        "description",
        "secret",
        "credential_glob",
        "options",
        "children",
    }
