"""Operations endpoints, outside /api/v1 and needing no API key: /healthz (liveness),
/readyz (readiness) and /metrics (Prometheus)."""
from . import views  # routes register on import
from .blueprint import bp

__all__ = ["bp", "views"]
