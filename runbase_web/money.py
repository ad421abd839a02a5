"""Money: integer micro-USD everywhere, and the one place that reads and writes dollars.

1 USD = 1,000,000 micro-USD. Nothing here uses floats: amounts typed by people or set in
the environment are read through Decimal, and shown by integer division.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from .errors import RunbaseError

MICROS_PER_USD = 1_000_000
MICROS_PER_CENT = 10_000

_DOLLARS = re.compile(r"(?P<sign>[-+]?)\s*\$?\s*(?P<whole>\d*)(?:\.(?P<frac>\d*))?")


def format_usd(micros: int) -> str:
    """Micro-USD as dollars for people: "$0.04", "$0.001", "$1.20", "-$0.50", "$1,234.50"
    (at least 2 and at most 6 decimals, trailing zeros beyond 2 trimmed)."""
    sign = "-" if micros < 0 else ""
    dollars, fraction = divmod(abs(int(micros)), MICROS_PER_USD)
    return f"{sign}${dollars:,}.{_decimals(fraction)}"


def plain_dollars(micros: int) -> str:
    """Micro-USD as a form or a terminal shows an amount to edit: "25.50", "0.001", "-1.25"
    (no "$", no thousands separators, 2 to 6 decimals)."""
    sign = "-" if micros < 0 else ""
    dollars, fraction = divmod(abs(int(micros)), MICROS_PER_USD)
    return f"{sign}{dollars}.{_decimals(fraction)}"


def decimal_text(micros: int) -> str:
    """Micro-USD as a fixed 6-decimal number for machines (CSV): "-0.000100", "25.500000"."""
    sign = "-" if micros < 0 else ""
    dollars, fraction = divmod(abs(int(micros)), MICROS_PER_USD)
    return f"{sign}{dollars}.{fraction:06d}"


def _decimals(fraction: int) -> str:
    return f"{fraction:06d}".rstrip("0").ljust(2, "0")


def dollars_to_micros(text: str) -> int:
    """An exact dollar amount ("1.00", "0.000001", "-2") as micro-USD; ValueError for
    anything that is not a finite number with at most 6 decimals."""
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"not a dollar amount: {text!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a dollar amount: {text!r}")
    micros = amount * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise ValueError("more than 6 decimals")
    return int(micros)


def parse_dollars(text: str, *, field: str, maximum_micros: int, decimals: int = 2,
                  negative: bool = False) -> int:
    """Read a dollar amount typed by a person ("25.50", "$5", "-1.25") into micro-USD, exactly.

    Refuses anything that is not plainly a number (no exponents, no thousands separators),
    more than `decimals` significant decimals, a minus sign unless `negative`, and
    amounts beyond `maximum_micros` either way. Errors carry `field` for the form.
    """
    match = _DOLLARS.fullmatch(text.strip())
    if not match or not (match["whole"] or match["frac"]):
        raise RunbaseError("Enter an amount in dollars, like 25.50.", field=field)
    whole, frac = match["whole"] or "0", (match["frac"] or "").rstrip("0")
    if len(frac) > decimals:
        unit = "cents" if decimals == 2 else "micro-dollars"
        raise RunbaseError(f"Use at most {decimals} decimals ({unit}).", field=field)
    too_much = f"That is more than the {format_usd(maximum_micros)} allowed."
    if len(whole.lstrip("0")) > 15:
        raise RunbaseError(too_much, field=field)
    micros = int(Decimal(f"{whole}.{frac or '0'}") * MICROS_PER_USD)
    if match["sign"] == "-" and micros:
        if not negative:
            raise RunbaseError("The amount can't be negative.", field=field)
        micros = -micros
    if abs(micros) > maximum_micros:
        raise RunbaseError(too_much, field=field)
    return micros
