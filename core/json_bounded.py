"""JSON from bodies other people send us (webhooks), parsed within bounds.

`json.loads` trusts its input: deep nesting raises RecursionError, a number of
100,000 digits raises ValueError (Python's int digit limit), and bytes in UTF-16 or
UTF-32 are decoded silently. Here every way a body can be unacceptable ends in one
`BadJSON`, whose message is safe to send back with a 400.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from itertools import accumulate
from typing import Any

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
# Characters of one number literal: 64-bit ids have 20 digits, amounts fewer.
MAX_NUMBER_CHARS = 100


class BadJSON(ValueError):
    """The body is not JSON we accept; the message says why."""


# A JSON string from its opening quote to its closing one, or to the end of the
# input when it is unterminated: every match succeeds, so scanning stays linear.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
# Brackets to +1 / -1 (0xff is -1 as a signed byte); everything else is dropped.
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def nesting_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in `raw` (brackets inside strings do not
    count). Runs in C-speed passes, without recursion."""
    brackets = _STRING.sub(b"", raw).translate(_STEPS, _NOT_BRACKETS)
    return max(accumulate(array("b", brackets)), default=0)


def _number(limit: int, convert: type[int] | type[float]) -> Any:
    def parse(literal: str) -> int | float:
        if len(literal) > limit:
            raise BadJSON(f"a number longer than {limit} characters")
        value = convert(literal)
        if isinstance(value, float) and not math.isfinite(value):
            raise BadJSON("a number out of range")
        return value

    return parse


def _constant(name: str) -> Any:
    raise BadJSON(f"{name} is not JSON")


def loads_bounded(
    raw: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    max_number_chars: int = MAX_NUMBER_CHARS,
) -> Any:
    """Parse UTF-8 JSON no longer than `max_bytes`, nested at most `max_depth` deep,
    with number literals of at most `max_number_chars` characters."""
    if len(raw) > max_bytes:
        raise BadJSON(f"body larger than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadJSON("body is not UTF-8") from None
    # Cheap upper bound first: few brackets cannot nest deeply.
    if raw.count(b"[") + raw.count(b"{") > max_depth and nesting_depth(raw) > max_depth:
        raise BadJSON(f"JSON nested deeper than {max_depth}")
    try:
        return json.loads(
            text,
            parse_int=_number(max_number_chars, int),
            parse_float=_number(max_number_chars, float),
            parse_constant=_constant,
        )
    except json.JSONDecodeError as exc:
        raise BadJSON(f"malformed JSON ({exc.msg})") from None
    except RecursionError:  # not reachable within max_depth; never a 500 if it were
        raise BadJSON(f"JSON nested deeper than {max_depth}") from None
