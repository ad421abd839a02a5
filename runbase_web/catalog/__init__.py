"""The model catalog as a package: specs, loading and routing (`specs`), run input
validation and pricing (`inputs`), and the packaged data (`models.json`)."""
from .inputs import InputError, price, validate_input
from .specs import (PACKAGED_PATH, UPSTREAM_ADAPTER, UPSTREAM_ENV, Catalog, CatalogError,
                    ModelSpec, effective_adapter)

__all__ = ["PACKAGED_PATH", "UPSTREAM_ADAPTER", "UPSTREAM_ENV", "Catalog", "CatalogError",
           "InputError", "ModelSpec", "effective_adapter", "price", "validate_input"]
