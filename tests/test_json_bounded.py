"""Bounded JSON parsing: what json.loads accepts within the bounds comes out the
same; everything else is one BadJSON, never RecursionError or ValueError."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.json_bounded import BadJSON, loads_bounded, nesting_depth

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@given(values)
def test_what_is_within_bounds_parses_as_json_loads_does(value: Any) -> None:
    raw = json.dumps(value, ensure_ascii=False).encode()
    assert loads_bounded(raw) == json.loads(raw)


@given(st.text(alphabet='[]{}"\\ab,:'))
def test_depth_ignores_brackets_inside_strings(inner: str) -> None:
    raw = json.dumps({"s": inner, "l": [[1]]}).encode()
    assert nesting_depth(raw) == 3


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64"),
        (b'{"a": ' * 65 + b"1" + b"}" * 65, "nested deeper than 64"),
        (b"1" * 100_000, "number longer"),
        (b"[0." + b"1" * 200 + b"]", "number longer"),
        (b"[1e999]", "out of range"),
        (b"[NaN]", "NaN is not JSON"),
        (b'"\xff"', "not UTF-8"),
        ('{"a": 1}'.encode("utf-16"), "not UTF-8"),
        (b'{"a": 1', "malformed JSON"),
        (b'"' + b'\\"' * 100_000, "malformed JSON"),
        (b" " * (1024 * 1024 + 1), "larger than"),
    ],
    ids=[
        "deep",
        "65-deep",
        "huge-int",
        "long-float",
        "infinite",
        "nan",
        "bad-utf8",
        "utf16",
        "truncated",
        "unterminated",
        "too-big",
    ],
)
def test_out_of_bounds_is_bad_json(raw: bytes, reason: str) -> None:
    with pytest.raises(BadJSON, match=reason):
        loads_bounded(raw)


def test_the_bounds_themselves_are_accepted() -> None:
    assert loads_bounded(b"[" * 64 + b"]" * 64) is not None
    assert loads_bounded(b"9" * 100) == int("9" * 100)
