"""Outgoing webhooks: queue a signed delivery when a run with a `webhook` URL ends."""
from __future__ import annotations

from sqlalchemy.orm import Session


def enqueue_for_run(session: Session, run_id: str) -> None:
    """Queue the run's webhook delivery, in the transaction that ended the run."""
    # Filled in by the webhooks feature (delivery, signing, retries).
    return None
