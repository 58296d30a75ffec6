"""Schemathesis against /openapi.json: generated requests (valid and not) never get a 5xx, with and without
the token, and every error is the JSON one-liner."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from medlens.serving.app import create_app
from medlens.serving.service import ServeSettings

TOKEN = "schema-token-0123456789"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDLENS_API_TOKEN", TOKEN)
        yield create_app(ServeSettings(data_dir=tmp_path_factory.mktemp("schema"), immediate_jobs=True))


def test_no_generated_request_gets_a_5xx(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 17
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def check(case) -> None:
            for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}):
                response = case.call(headers=headers)
                assert response.status_code < 500, (
                    case.method,
                    case.formatted_path,
                    response.status_code,
                    response.text[:300],
                )
                if response.status_code >= 400:
                    assert set(response.json()) == {"error"}

        check()
