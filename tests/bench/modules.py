"""Importing the benchmarks' scripts in tests: bench/ is a folder of scripts run by
path, not a package."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

#: bench/ in this checkout.
BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(relative_path: str) -> ModuleType:
    """The script at bench/`relative_path`, imported from its file as `bench_<name>` and
    kept in sys.modules until `unload` (its dataclasses look their module up there)."""
    path = BENCH / relative_path
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(spec.name, None)
        raise
    return module


def unload(module: ModuleType) -> None:
    """Forget a module `load` imported."""
    sys.modules.pop(module.__name__, None)
