"""The storage settings: parsed and checked at start-up, and documented."""
from __future__ import annotations

from pathlib import Path

import pytest

from runbase_web.config import ConfigError, load_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def settings(tmp_path, **env):
    return load_settings(env={"RUNBASE_DATA_DIR": str(tmp_path), **env})


def test_defaults_are_local_disk_and_streaming(tmp_path):
    loaded = settings(tmp_path)
    assert loaded["STORAGE_URL"] is None and loaded["STORAGE_PRESIGN_SECONDS"] == 0


@pytest.mark.parametrize("url", ["s3://runbase-files", "s3://runbase.files/prod/outputs",
                                 "file:///srv/runbase/files", "file://localhost/srv/files"])
def test_storage_urls(tmp_path, url):
    assert settings(tmp_path, RUNBASE_STORAGE_URL=url)["STORAGE_URL"] == url


def test_presign_seconds(tmp_path):
    loaded = settings(tmp_path, RUNBASE_STORAGE_URL="s3://bucket-a",
                      RUNBASE_STORAGE_PRESIGN_SECONDS="600")
    assert loaded["STORAGE_PRESIGN_SECONDS"] == 600


@pytest.mark.parametrize("env", [
    {"RUNBASE_STORAGE_URL": "s3://"}, {"RUNBASE_STORAGE_URL": "s3://Upper_Case"},
    {"RUNBASE_STORAGE_URL": "s3://ab"}, {"RUNBASE_STORAGE_URL": "gs://bucket-a"},
    {"RUNBASE_STORAGE_URL": "/srv/files"}, {"RUNBASE_STORAGE_URL": "file://host/srv/files"},
    {"RUNBASE_STORAGE_URL": "file:relative/files"},
    {"RUNBASE_STORAGE_URL": "s3://bucket-a?region=eu-west-1"},
    {"RUNBASE_STORAGE_URL": "s3://bucket-a", "RUNBASE_STORAGE_PRESIGN_SECONDS": "-1"},
    {"RUNBASE_STORAGE_URL": "s3://bucket-a", "RUNBASE_STORAGE_PRESIGN_SECONDS": "an hour"},
    {"RUNBASE_STORAGE_URL": "s3://bucket-a", "RUNBASE_STORAGE_PRESIGN_SECONDS": "604801"},
    {"RUNBASE_STORAGE_PRESIGN_SECONDS": "60"},  # nothing to sign links with on local disk
])
def test_bad_values_fail_at_start_up(tmp_path, env):
    with pytest.raises(ConfigError, match="RUNBASE_STORAGE_"):
        settings(tmp_path, **env)


def test_the_settings_are_documented():
    text = README.read_text()
    for name in ("RUNBASE_STORAGE_URL", "RUNBASE_STORAGE_PRESIGN_SECONDS"):
        assert f"| `{name}` |" in text, name
    assert "## File storage" in text and "copy-files-to-storage" in text
