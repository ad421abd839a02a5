"""Storage tests run against a real S3 HTTP API: moto's standalone server
(tests/support/s3_server.py). Every app built here keeps its files in a fresh bucket,
under a prefix, unless a module asks for something else through `app_config`."""
from __future__ import annotations

import pytest

from tests.support.s3_server import (s3_bucket, s3_env, s3_server,  # noqa: F401 (fixtures)
                                     s3_storage_url)


@pytest.fixture
def app_config(s3_storage_url):  # noqa: F811 (the fixture imported above)
    """The app's files go to s3://<fresh bucket>/outputs/."""
    return {"STORAGE_URL": s3_storage_url}
