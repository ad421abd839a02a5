"""Which adapter serves which catalog entry.

A provider is one adapter module here (a `common.ProviderAdapter` subclass) named in
`ADAPTERS`; the catalog's `adapter` field picks it, and the catalog loader refuses names that
are not listed (see docs/providers.md, "Adding a provider").
"""
from __future__ import annotations

import importlib

from ..catalog import ModelSpec, effective_adapter
from .base import Adapter, ProviderContext, ProviderError

__all__ = ["ADAPTERS", "ProviderContext", "adapter_class", "adapter_for"]

#: Catalog `adapter` name → (module in runbase_web.providers, class name).
ADAPTERS = {
    "local": ("local", "LocalAdapter"),
    "openai": ("openai", "OpenAIImagesAdapter"),
    "gemini": ("gemini", "GeminiImageAdapter"),
    "gemini_veo": ("gemini", "VeoAdapter"),
    "ark_images": ("ark", "SeedreamAdapter"),
    "ark_tasks": ("ark", "SeedanceAdapter"),
    "kling": ("kling", "KlingAdapter"),
    "minimax": ("minimax", "HailuoAdapter"),
    "replicate": ("replicate", "ReplicateAdapter"),
    "fal": ("fal", "FalAdapter"),
    "runbase": ("upstream", "UpstreamRunbaseAdapter"),
}


def adapter_class(name: str) -> type | None:
    """The adapter class registered as `name` (not configured: for its class-level
    knowledge, such as checking a callback's signature), or None for an unknown name."""
    module_name, class_name = ADAPTERS.get(name, (None, None))
    if module_name is None:
        return None
    try:
        module = importlib.import_module(f"{__package__}.{module_name}")
    except ModuleNotFoundError:
        return None
    return getattr(module, class_name)


def adapter_for(spec: ModelSpec, context: ProviderContext) -> Adapter:
    """The adapter for a model, configured from the provider's variables: the one named by
    `context.adapter` (the adapter a run started with), else the one the variables route to
    (a model routed to an upstream Runbase gets the upstream adapter; catalog.effective_adapter)."""
    name = context.adapter or effective_adapter(spec, context.env)
    if name not in ADAPTERS:
        raise ProviderError(f"No adapter named '{name}'.", code="model_unavailable")
    adapter = adapter_class(name)
    if adapter is None:
        raise ProviderError(f"The {name} adapter is not available on this server yet.",
                            code="model_unavailable")
    return adapter.from_context(spec, context)
