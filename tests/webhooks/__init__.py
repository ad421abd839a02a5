"""Tests of outgoing webhooks: a real receiver on 127.0.0.1 and an independent verifier.

The verifier here is written from the Standard Webhooks spec, not from
runbase_web.services.webhooks, so a mistake in the sender's key decoding or signed
content cannot be mirrored by the check.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import select

from runbase_web.extensions import db
from runbase_web.models import WebhookAttempt, WebhookDelivery
from runbase_web.services import webhooks
from runbase_web.worker.claim import claim_due_deliveries
from runbase_web.worker.webhook_delivery import LEASE_SECONDS, attempt

TOLERANCE_SECONDS = 5 * 60


class Rejected(Exception):
    """A delivery the receiver refuses; `status` is the answer it gives."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def verify(secret: str, headers: dict, body: bytes, *, now: float | None = None) -> None:
    """Check a delivery as a careful receiver would; raises Rejected (400 or 401)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = lowered.get("webhook-id")
    stamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (message_id and stamp and signatures):
        raise Rejected(400, "missing header")
    if not stamp.isdigit() or abs((now or time.time()) - int(stamp)) > TOLERANCE_SECONDS:
        raise Rejected(401, "timestamp outside the tolerance")
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, message_id.encode() + b"." + stamp.encode() + b"." + body, hashlib.sha256)
    for entry in signatures.split(" "):
        version, _, value = entry.partition(",")
        try:
            candidate = base64.b64decode(value, validate=True)
        except ValueError:
            continue
        if version == "v1" and hmac.compare_digest(candidate, mac.digest()):
            return
    raise Rejected(401, "no valid signature")


@dataclass
class Received:
    """One POST the receiver got."""

    headers: dict[str, str]
    body: bytes
    status: int
    #: None when the signature was checked and held, else why it was refused.
    rejected: str | None

    @property
    def message_id(self) -> str:
        """The webhook-id header."""
        return self.headers["webhook-id"]

    @property
    def json(self):
        """The body, parsed."""
        return json.loads(self.body)


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that verifies, deduplicates and can be scripted.

    `secret` is the account secret to verify with (None: do not verify). `script`
    holds answers (status codes) given in order; after it runs out, 200. A message
    id seen before is acknowledged without being handled again (S11).
    """

    secret: str | None = None
    script: deque = field(default_factory=deque)
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    handled: dict[str, dict] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The endpoint's URL."""
        return f"http://127.0.0.1:{self.server.server_port}/hook"

    def start(self) -> "Receiver":
        """Serve in a background thread."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.handle(dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()

    def handle(self, headers: dict, body: bytes) -> int:
        """Verify, deduplicate and answer one delivery."""
        headers = {name.lower(): value for name, value in headers.items()}
        if self.delay:
            time.sleep(self.delay)
        rejected = None
        with self.lock:
            try:
                if self.secret is not None:
                    verify(self.secret, headers, body)
                status = self.script.popleft() if self.script else 200
            except Rejected as error:
                status, rejected = error.status, str(error)
            message_id = headers.get("webhook-id")
            if 200 <= status < 300 and message_id not in self.handled:
                self.handled[message_id] = json.loads(body)
            self.received.append(Received(headers, body, status, rejected))
        return status

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        """Wait until `count` POSTs arrived; returns them all."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.received)} of {count} webhook POSTs arrived")


def account_secret(app, user_id: int) -> str:
    """The account's signing secret (created if it had none)."""
    with app.app_context():
        secret = webhooks.ensure_secret(db.session, user_id)
        db.session.commit()
        return secret


def deliveries_of(app, run_id: str) -> list[WebhookDelivery]:
    """The run's deliveries as stored."""
    with app.app_context():
        return list(db.session.scalars(select(WebhookDelivery)
                                       .where(WebhookDelivery.run_id == run_id)))


def attempts_of(app, delivery_id: str) -> list[WebhookAttempt]:
    """The delivery's attempts, oldest first."""
    with app.app_context():
        return list(db.session.scalars(select(WebhookAttempt)
                                       .where(WebhookAttempt.delivery_id == delivery_id)
                                       .order_by(WebhookAttempt.attempted_at, WebhookAttempt.id)))


def wait_for_delivery(app, run_id: str, until=("delivered", "failed"), timeout: float = 15.0):
    """Poll until the run's delivery reaches one of the `until` statuses."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = deliveries_of(app, run_id)
        if found and found[0].status in until:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"the delivery of {run_id} did not reach {until}: {found}")


def deliver_due(app, *, limit: int = 8, now=None) -> int:
    """Claim due deliveries and attempt each one in this thread, as the worker's delivery
    loop does on its pool; returns how many. `now` replaces the clock for scheduling
    (tests step through the 24 h window with it); signatures always use the real clock."""
    with app.app_context():
        try:
            claimed = claim_due_deliveries(db.session, limit, LEASE_SECONDS, at=now)
        finally:
            db.state(app).session.remove()
    for delivery_id, lease_until in claimed:
        attempt(app, delivery_id, lease_until, now=now)
    return len(claimed)
