"""A 0 ms fake OpenAI Images API on 127.0.0.1, in its own process, for image_runs.py.

    python bench/fake_openai.py PORT [API_KEY]

The test suite's standalone fake (tests/fakes/standalone.py), in its own process so that
its work does not share a GIL with the benchmark's client threads.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.standalone import main  # noqa: E402

if __name__ == "__main__":
    main([sys.argv[1]] + (["--key", sys.argv[2]] if len(sys.argv) > 2 else []))
