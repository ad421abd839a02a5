"""SQLAlchemy tables. Import models from here."""
from .api_key import ApiKey
from .base import Base, utcnow
from .batch import Batch
from .callback import ProviderCallback
from .checkout_session import CheckoutSession
from .file import StoredFile
from .idempotency import IdempotencyRecord
from .input_file import InputFile
from .ledger import EntryKind, LedgerEntry
from .run import ACTIVE_STATUSES, Run, RunStatus, is_active
from .user import User
from .webhook import WebhookAttempt, WebhookDelivery

__all__ = ["ACTIVE_STATUSES", "ApiKey", "Base", "Batch", "CheckoutSession", "EntryKind",
           "IdempotencyRecord", "InputFile", "LedgerEntry", "ProviderCallback", "Run",
           "RunStatus", "StoredFile", "User", "WebhookAttempt", "WebhookDelivery", "is_active",
           "utcnow"]
