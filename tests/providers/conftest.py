"""Fixtures the provider tests share (helpers are in tests/providers/support.py)."""
from __future__ import annotations

import importlib
import io

import pytest
from flask import Flask, Response
from PIL import Image

from runbase_web.providers import fal, registry, replicate
from runbase_web.providers.common import ProviderAdapter
from tests.fakes.server import FakeServer
from tests.providers.support import stop_soon


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch):
    """Poll the fakes far more often than real providers warrant, to keep the suite quick:
    the default schedule (Replicate, fal, upstream Runbase) and every adapter's own (Veo,
    Seedance, Kling, Hailuo are polled every 5-10 s in production; their fakes finish in
    a few polls)."""
    monkeypatch.setattr(ProviderAdapter, "POLL_SCHEDULE", (0.3, 0.3, 0.5))
    for module_name, class_name in registry.ADAPTERS.values():
        adapter = getattr(importlib.import_module(f"runbase_web.providers.{module_name}"), class_name)
        if "POLL_SCHEDULE" in vars(adapter):
            monkeypatch.setattr(adapter, "POLL_SCHEDULE", (0.2,))


@pytest.fixture(autouse=True)
def _fresh_signing_keys():
    """Every fake has keys of its own and may get an earlier fake's port: no test checks a
    callback with keys cached by another."""
    replicate.SECRET_CACHE.clear()
    fal.JWKS_CACHE.clear()
    yield
    replicate.SECRET_CACHE.clear()
    fal.JWKS_CACHE.clear()


@pytest.fixture
def public_url(app, http_server):
    """The app served over HTTP and reachable at RUNBASE_PUBLIC_URL, as a deployment that
    providers can call back; returns that URL."""
    app.config["PUBLIC_URL"] = http_server
    return http_server


def _animated_gif() -> bytes:
    """A real two-frame GIF."""
    buffer = io.BytesIO()
    frames = [Image.new("RGB", (24, 16), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


@pytest.fixture
def refs():
    """A loopback server for reference images; yields {name: (url, bytes)}: /a.png, /b.jpg,
    /c.gif (a still GIF, which OpenAI and Gemini refuse), /anim.gif (two frames) and
    /broken.gif (a GIF header over bytes no decoder can read)."""
    images = {"a.png": ("PNG", "image/png", (10, 200, 30)), "b.jpg": ("JPEG", "image/jpeg", (1, 2, 250)),
              "c.gif": ("GIF", "image/gif", (240, 200, 0))}
    blobs = {}
    for name, (kind, mime, colour) in images.items():
        buffer = io.BytesIO()
        Image.new("RGB", (24, 16), colour).save(buffer, kind)
        blobs[name] = (buffer.getvalue(), mime)
    blobs["anim.gif"] = (_animated_gif(), "image/gif")
    blobs["broken.gif"] = (b"GIF89a" + bytes(range(256)) * 4, "image/gif")
    app = Flask("refs")

    @app.get("/<name>")
    def serve(name):
        if name not in blobs:
            return Response("Not Found", status=404)
        data, mime = blobs[name]
        return Response(data, mimetype=mime)

    server = FakeServer(app).start()
    yield {name: (f"{server.url}/{name}", data) for name, (data, _mime) in blobs.items()}
    stop_soon(server)
