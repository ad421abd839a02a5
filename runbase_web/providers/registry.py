"""Which adapter serves which catalog entry."""
from __future__ import annotations

from typing import Mapping

from ..services.catalog import ModelSpec
from .base import Adapter, ProviderError
from .local import LocalAdapter


def adapter_for(spec: ModelSpec, provider_env: Mapping[str, str]) -> Adapter:
    """The adapter for a model, configured from the provider's variables."""
    if spec.adapter == "local":
        return LocalAdapter()
    # Public providers get their adapters in their own issue; until then a run for
    # one fails cleanly (and is refunded) instead of hanging.
    raise ProviderError(f"The {spec.adapter} adapter is not available on this server yet.",
                        code="model_unavailable")
