"""Money helpers: integer micro-USD in, exact text out; exact dollars in, micro-USD out."""
from __future__ import annotations

import pytest

from runbase_web.errors import RunbaseError
from runbase_web.money import (decimal_text, dollars_to_micros, format_usd, parse_dollars,
                               plain_dollars)


@pytest.mark.parametrize("micros, text", [
    (40000, "$0.04"), (1000, "$0.001"), (1200000, "$1.20"), (0, "$0.00"), (100, "$0.0001"),
    (1, "$0.000001"), (562500, "$0.5625"), (1_000_000, "$1.00"), (1_234_500_000, "$1,234.50"),
    (-40000, "-$0.04"),
])
def test_format_usd(micros, text):
    assert format_usd(micros) == text


@pytest.mark.parametrize("micros, plain, fixed", [
    (25_500_000, "25.50", "25.500000"), (1000, "0.001", "0.001000"), (-1_250_000, "-1.25", "-1.250000"),
    (0, "0.00", "0.000000"), (1_234_000_000, "1234.00", "1234.000000"),
])
def test_plain_and_fixed_dollars(micros, plain, fixed):
    assert plain_dollars(micros) == plain and decimal_text(micros) == fixed


@pytest.mark.parametrize("text, micros", [("1.00", 1_000_000), ("0.000001", 1), ("-2", -2_000_000),
                                          (" 3.5 ", 3_500_000)])
def test_dollars_to_micros_is_exact(text, micros):
    assert dollars_to_micros(text) == micros


@pytest.mark.parametrize("text", ["0.0000001", "abc", "NaN", "Infinity", ""])
def test_dollars_to_micros_refuses(text):
    with pytest.raises(ValueError):
        dollars_to_micros(text)


@pytest.mark.parametrize("text, micros", [("25.50", 25_500_000), ("$5", 5_000_000), ("0.1", 100_000)])
def test_parse_dollars(text, micros):
    assert parse_dollars(text, field="amount", maximum_micros=10**12) == micros


@pytest.mark.parametrize("text, kwargs, message", [
    ("1.234", {}, "at most 2 decimals"), ("-1", {}, "can't be negative"),
    ("2000", {"maximum_micros": 1_000_000_000}, "more than the $1,000.00 allowed"),
    ("1e3", {}, "Enter an amount"), ("1,000", {}, "Enter an amount"),
])
def test_parse_dollars_refuses_with_the_field(text, kwargs, message):
    with pytest.raises(RunbaseError) as refused:
        parse_dollars(text, field="amount", **{"maximum_micros": 10**12, **kwargs})
    assert message in refused.value.message and refused.value.field == "amount"


def test_money_is_defined_once():
    """One definition of the micro-USD unit: no module redefines it."""
    from pathlib import Path
    package = Path(__file__).resolve().parents[1] / "runbase_web"
    defining = [path.relative_to(package).as_posix() for path in package.rglob("*.py")
                if "MICROS_PER_USD = " in path.read_text(encoding="utf-8")]
    assert defining == ["money.py"]
