"""Random public ids (`run_…`, `grid_…`, `msg_…`): unguessable, URL-safe, uniform."""
from __future__ import annotations

import secrets
import string

#: The alphabet of run and grid ids (`run_…`, `grid_…`).
LOWERCASE_AND_DIGITS = string.ascii_lowercase + string.digits


def random_text(alphabet: str, length: int) -> str:
    """`length` characters drawn uniformly and independently from `alphabet`, from the
    operating system's CSPRNG.

    One random number below len(alphabet) ** length, written in that base: the same
    distribution as a `secrets.choice` per character, at one draw instead of `length`:
    ~3 µs instead of ~34 µs for a run id, about 4 % of a create's CPU."""
    base = len(alphabet)
    value = secrets.randbelow(base ** length)
    characters = []
    for _ in range(length):
        value, digit = divmod(value, base)
        characters.append(alphabet[digit])
    return "".join(characters)
