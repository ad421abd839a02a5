"""Public ids: the right length and alphabet, every character equally likely, no repeats."""
from __future__ import annotations

import string
from collections import Counter

from runbase_web.ids import random_text
from runbase_web.services.run_creation import new_run_id

ALPHABET = string.ascii_lowercase + string.digits


def test_a_run_id_is_run_and_24_lowercase_letters_or_digits():
    ids = {new_run_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 28 and i.startswith("run_") and set(i[4:]) <= set(ALPHABET)
               for i in ids)


def test_every_character_is_about_equally_likely_in_every_position():
    draws = [random_text(ALPHABET, 24) for _ in range(3000)]
    for position in (0, 11, 23):  # first, middle and last: the base conversion's ends
        counts = Counter(text[position] for text in draws)
        assert set(counts) == set(ALPHABET)
        expected = len(draws) / len(ALPHABET)  # 83.3; a fair draw stays inside ±60 % (5 sigma)
        assert all(0.4 * expected < n < 1.6 * expected for n in counts.values()), counts


def test_a_one_character_alphabet_and_zero_length_work():
    assert random_text("a", 5) == "aaaaa"
    assert random_text(ALPHABET, 0) == ""
