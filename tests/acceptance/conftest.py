"""Fixtures of the acceptance tests: the services that examples with a ``# needs:`` header use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.clickhouse import clickhouse
from support.services import example_credentials, moto_server, nats_url


@pytest.fixture(scope="session")
def example_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Environment for ``noetl run`` of a service example: NOETL_CREDENTIALS_FILE naming its services."""
    root = tmp_path_factory.mktemp("example-services")
    with moto_server() as s3, nats_url(root / "nats") as nats, clickhouse(root / "clickhouse") as ch:
        creds = example_credentials(root / "creds.json", s3_endpoint=s3, nats=nats, clickhouse=ch.url)
        yield {"NOETL_CREDENTIALS_FILE": str(creds)}
