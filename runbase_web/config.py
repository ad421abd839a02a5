"""Every Runbase setting: its environment variable, default and validation.

Settings are read once, when the app is created, and checked then, so a typo in
an operator's environment fails at start-up instead of on the first request.
Names are a stable interface (README, "Settings"): scripts and docs depend on them.
"""
from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from .money import dollars_to_micros

#: Provider credentials and base URLs; a model is available when its variables are set.
PROVIDER_VARIABLES = (
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "GEMINI_API_KEY", "GEMINI_BASE_URL",
    "ARK_API_KEY", "ARK_BASE_URL", "KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_BASE_URL",
    "MINIMAX_API_KEY", "MINIMAX_BASE_URL", "REPLICATE_API_TOKEN", "REPLICATE_BASE_URL",
    "FAL_KEY", "FAL_QUEUE_URL", "RUNBASE_UPSTREAM_URL", "RUNBASE_UPSTREAM_KEY",
    # Checking providers' callbacks (README, "Provider callbacks").
    "FAL_WEBHOOK_JWKS_URL", "RUNBASE_UPSTREAM_WEBHOOK_SECRET",
)

class ConfigError(ValueError):
    """A setting has a value Runbase cannot run with."""


def parse_bool(name: str, value: str) -> bool:
    """Read a 1/0, true/false, yes/no, on/off flag."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be 1 or 0, not {value!r}")


def parse_int(name: str, value: str, minimum: int) -> int:
    """Read a whole number no smaller than `minimum`."""
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return number


def parse_seconds(name: str, value: str) -> float:
    """Read a positive number of seconds."""
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {value!r}") from None
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(f"{name} must be a positive number of seconds")
    return seconds


def parse_grace_seconds(name: str, value: str) -> float:
    """Read a number of seconds that may be zero (0: no waiting at all)."""
    if value.strip() in ("0", "0.0"):
        return 0.0
    return parse_seconds(name, value)


def parse_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Read one of a few words, case-insensitively."""
    lowered = value.strip().lower()
    if lowered not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return lowered


def parse_address(name: str, value: str) -> tuple[str, int] | None:
    """Read `host:port` (e.g. 127.0.0.1:9101, [::1]:9101); empty means none."""
    if not value.strip():
        return None
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name} must look like 127.0.0.1:9101 (host:port), not {value!r}")
    return host.strip("[]"), int(port)


def usd_to_micros(name: str, value: str) -> int:
    """Read a dollar amount such as "1.00" into integer micro-USD, exactly."""
    try:
        return dollars_to_micros(value)
    except ValueError:
        raise ConfigError(f"{name} must be a dollar amount like 1.00, with at most 6 "
                          f"decimals, not {value!r}") from None


def parse_rate_limit(name: str, value: str) -> tuple[int, int] | None:
    """Read `N/Ms` (N requests per M seconds) or `off`."""
    if value.strip().lower() == "off":
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*s\s*", value)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ConfigError(f"{name} must look like 20/10s (requests per seconds) or off")
    return int(match.group(1)), int(match.group(2))


_HOST_NAME = re.compile(r"^\.?[a-z0-9_-]+(\.[a-z0-9_-]+)*$|^\[[0-9a-f:.]+\]$")


def parse_hosts(name: str, value: str) -> tuple[str, ...] | None:
    """Read a comma-separated list of host names (`*` for any, `.example.com` for it and
    every name under it); None when empty, i.e. unset."""
    names = tuple(part.strip().lower() for part in value.split(",") if part.strip())
    if not names:
        return None
    for host in names:
        if host != "*" and not _HOST_NAME.match(host):
            raise ConfigError(f"{name} lists {host!r}: give host names or IP addresses without "
                              "scheme or port, [brackets] around IPv6, `.example.com` for a "
                              "domain and its subdomains, or * for any")
    return names


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
#: The longest a SigV4 presigned URL may live (7 days).
PRESIGN_MAX_SECONDS = 7 * 24 * 3600


def parse_storage_url(name: str, value: str) -> str | None:
    """Read where output files live: s3://bucket/optional/prefix or file:///absolute/path;
    None (empty) is the data dir's files/ directory."""
    value = value.strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.query or parts.fragment:
        raise ConfigError(f"{name} takes no ?query or #fragment")
    if parts.scheme == "s3":
        if not _BUCKET.match(parts.netloc):
            raise ConfigError(f"{name} must look like s3://bucket/prefix, with a bucket name of "
                              f"3-63 lowercase letters, digits, dots and dashes, not {value!r}")
        return value
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ConfigError(f"{name} must look like file:///absolute/path, not {value!r}")
        return value
    raise ConfigError(f"{name} must be an s3:// or file:// URL, not {value!r}")


def parse_presign_seconds(name: str, value: str) -> int:
    """Read how long presigned file links live: 0 (off) up to 7 days."""
    seconds = parse_int(name, value or "0", 0)
    if seconds > PRESIGN_MAX_SECONDS:
        raise ConfigError(f"{name} must be at most {PRESIGN_MAX_SECONDS} (7 days)")
    return seconds


def _secret_key(data_dir: Path) -> str:
    """The session signing key: generated once into the data dir, kept across restarts."""
    path = data_dir / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Settings that come straight from RUNBASE_* variables, parsed and checked."""
    get = env.get
    return {
        "DATA_DIR": get("RUNBASE_DATA_DIR", "./instance"),
        "DATABASE_URL": get("RUNBASE_DATABASE_URL", ""),
        "PUBLIC_URL": get("RUNBASE_PUBLIC_URL", "").rstrip("/"),
        # None: unset, i.e. the loopback names and the host of PUBLIC_URL (hosts.py).
        "ALLOWED_HOSTS": parse_hosts("RUNBASE_ALLOWED_HOSTS", get("RUNBASE_ALLOWED_HOSTS", "")),
        "SIGNUP_CREDIT_MICROS": usd_to_micros(
            "RUNBASE_SIGNUP_CREDIT_USD", get("RUNBASE_SIGNUP_CREDIT_USD", "1.00")),
        "EMBEDDED_WORKER": parse_bool("RUNBASE_EMBEDDED_WORKER", get("RUNBASE_EMBEDDED_WORKER", "1")),
        "LEASE_SECONDS": parse_int("RUNBASE_LEASE_SECONDS", get("RUNBASE_LEASE_SECONDS", "30"), 2),
        "WORKER_THREADS": parse_int("RUNBASE_WORKER_THREADS", get("RUNBASE_WORKER_THREADS", "8"), 1),
        "WORKER_POLL_SECONDS": float(get("RUNBASE_WORKER_POLL_SECONDS", "0.5")),
        "PROVIDER_CALLBACKS": parse_bool(
            "RUNBASE_PROVIDER_CALLBACKS", get("RUNBASE_PROVIDER_CALLBACKS", "1")),
        "CALLBACK_POLL_SECONDS": parse_seconds(
            "RUNBASE_CALLBACK_POLL_SECONDS", get("RUNBASE_CALLBACK_POLL_SECONDS", "60")),
        # How long a stopping worker (SIGTERM) lets provider calls in progress finish
        # before it gives their runs back to other workers (README, "Health, metrics
        # and logs").
        "SHUTDOWN_GRACE_SECONDS": parse_grace_seconds(
            "RUNBASE_SHUTDOWN_GRACE_SECONDS", get("RUNBASE_SHUTDOWN_GRACE_SECONDS", "30")),
        # /metrics answers only with this bearer token; unset, it is off (404).
        "METRICS_TOKEN": get("RUNBASE_METRICS_TOKEN", "") or None,
        # Where a standalone worker serves its own in-process metrics; unset: nowhere.
        "WORKER_METRICS_ADDRESS": parse_address(
            "RUNBASE_WORKER_METRICS_ADDRESS", get("RUNBASE_WORKER_METRICS_ADDRESS", "")),
        # text (default; Werkzeug's plain access lines under python app.py) or json (one
        # JSON object per log line, one per request with its request_id).
        "LOG_FORMAT": parse_choice("RUNBASE_LOG_FORMAT", get("RUNBASE_LOG_FORMAT", "text"),
                                   ("text", "json")),
        # Where output files live (README, "File storage"): None is DATA_DIR/files.
        "STORAGE_URL": parse_storage_url("RUNBASE_STORAGE_URL", get("RUNBASE_STORAGE_URL", "")),
        # >0: /files/generated/ redirects to a presigned URL living this long (S3 only).
        "STORAGE_PRESIGN_SECONDS": parse_presign_seconds(
            "RUNBASE_STORAGE_PRESIGN_SECONDS", get("RUNBASE_STORAGE_PRESIGN_SECONDS", "0")),
        "SECRET_KEY": get("RUNBASE_SECRET_KEY", ""),
        "RATE_LIMIT": parse_rate_limit("RUNBASE_RATE_LIMIT", get("RUNBASE_RATE_LIMIT", "20/10s")),
        # How long a process may trust an API key look-up. Changes made through this
        # process apply at once; a key disabled or deleted elsewhere (another web process,
        # the CLI, SQL) stops working within this many seconds.
        "KEY_CACHE_SECONDS": float(get("RUNBASE_KEY_CACHE_SECONDS", "5")),
        "REDIS_URL": get("RUNBASE_REDIS_URL", "") or None,
        "TRUSTED_PROXIES": parse_int("RUNBASE_TRUSTED_PROXIES", get("RUNBASE_TRUSTED_PROXIES", "0"), 0),
        "CATALOG_PATH": get("RUNBASE_CATALOG", "") or None,
        "MAX_CONTENT_LENGTH": parse_int(
            "RUNBASE_MAX_BODY_BYTES", get("RUNBASE_MAX_BODY_BYTES", str(1024 * 1024)), 1024),
        "PROVIDER_ENV": {name: env[name] for name in PROVIDER_VARIABLES if env.get(name)},
        # Largest image a user may upload as a reference (POST /api/v1/files, Playground).
        "UPLOAD_MAX_BYTES": parse_int(
            "RUNBASE_UPLOAD_MAX_BYTES", get("RUNBASE_UPLOAD_MAX_BYTES", str(20 * 1024 * 1024)), 1024),
        "FETCH_MAX_BYTES": parse_int(
            "RUNBASE_FETCH_MAX_BYTES", get("RUNBASE_FETCH_MAX_BYTES", str(100 * 1024 * 1024)), 1024),
        "AUTH_RATE_LIMIT": parse_rate_limit(
            "RUNBASE_AUTH_RATE_LIMIT", get("RUNBASE_AUTH_RATE_LIMIT", "10/60s")),
        "STRIPE_SECRET_KEY": get("STRIPE_SECRET_KEY", "") or None,
        "STRIPE_WEBHOOK_SECRET": get("STRIPE_WEBHOOK_SECRET", "") or None,
        "STRIPE_API_BASE": get("STRIPE_API_BASE", "https://api.stripe.com").rstrip("/"),
        "GOOGLE_CLIENT_ID": get("GOOGLE_CLIENT_ID", "") or None,
        "GOOGLE_CLIENT_SECRET": get("GOOGLE_CLIENT_SECRET", "") or None,
        "GOOGLE_DISCOVERY_URL": get("GOOGLE_DISCOVERY_URL",
                                    "https://accounts.google.com/.well-known/openid-configuration"),
        # Lets the fetcher reach 127.0.0.1 (test fakes); deliberately not settable from the
        # environment, so no deployment can switch the SSRF guard off by accident.
        "FETCH_ALLOW_LOOPBACK": False,
    }


def load_settings(overrides: Mapping[str, Any] | None = None,
                  env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the app's settings from the environment, then apply test/embedding overrides."""
    settings = _from_env(os.environ if env is None else env)
    settings.update(overrides or {})
    data_dir = Path(settings["DATA_DIR"]).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "files").mkdir(exist_ok=True)
    settings["DATA_DIR"] = str(data_dir)
    if not settings["DATABASE_URL"]:
        settings["DATABASE_URL"] = f"sqlite:///{data_dir / 'runbase.db'}"
    if not settings["SECRET_KEY"]:
        settings["SECRET_KEY"] = _secret_key(data_dir)
    _validate(settings)
    return settings


def _validate(settings: Mapping[str, Any]) -> None:
    """Refuse combinations that would only fail later, at a worse moment."""
    url = settings["DATABASE_URL"]
    if not url.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
        raise ConfigError("RUNBASE_DATABASE_URL must be a sqlite:// or postgresql+psycopg:// URL")
    public = settings["PUBLIC_URL"]
    if public and not re.match(r"^https?://[^/\s]+(/\S*)?$", public):
        raise ConfigError("RUNBASE_PUBLIC_URL must be an absolute http(s) URL")
    storage = settings.get("STORAGE_URL") or ""
    if settings.get("STORAGE_PRESIGN_SECONDS") and not storage.startswith("s3:"):
        raise ConfigError("RUNBASE_STORAGE_PRESIGN_SECONDS needs RUNBASE_STORAGE_URL=s3://...: "
                          "only a bucket can sign links to its files")
    if settings["WORKER_POLL_SECONDS"] <= 0:
        raise ConfigError("RUNBASE_WORKER_POLL_SECONDS must be positive")
