"""Which adapter serves which catalog entry, and what adapters get to work with."""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Mapping

from ..catalog import ModelSpec, effective_adapter
from .base import Adapter, ProviderError

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


@dataclass(frozen=True)
class ProviderContext:
    """What every adapter is built from: the provider variables and the guarded fetcher
    (for reference images and output URLs; see runbase_web/net.py)."""

    env: Mapping[str, str]
    fetcher: object = None
    options: Mapping[str, object] = field(default_factory=dict)


def adapter_for(spec: ModelSpec, context: ProviderContext) -> Adapter:
    """The adapter for a model, configured from the provider's variables; a model routed
    to an upstream Runbase (catalog.effective_adapter) gets the upstream adapter."""
    name = effective_adapter(spec, context.env)
    module_name, class_name = ADAPTERS.get(name, (None, None))
    if module_name is None:
        raise ProviderError(f"No adapter named '{name}'.", code="model_unavailable")
    try:
        module = importlib.import_module(f"{__package__}.{module_name}")
    except ModuleNotFoundError:
        raise ProviderError(f"The {name} adapter is not available on this server yet.",
                            code="model_unavailable") from None
    return getattr(module, class_name).from_context(spec, context)
