"""Absolute URLs for outputs: RUNBASE_PUBLIC_URL when set, else this request's host."""
from flask import current_app, has_request_context, request


def public_base_url() -> str:
    """The scheme and host outputs are served from, without a trailing slash."""
    configured = current_app.config.get("PUBLIC_URL")
    if configured:
        return configured
    if has_request_context():
        return request.host_url.rstrip("/")
    return ""
