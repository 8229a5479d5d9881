"""pretty_json takes orjson's C encoder only where its text is exactly json.dumps(indent=2)'s: generated
JSON values (floats, integers around 64 bits, surrogates, control and separator characters, nesting)
must come out the same as from the standard library."""

from __future__ import annotations

import json
import random
from typing import Any

from ecaptureq.decode.bodies import pretty_json


def _reference(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (ValueError, RecursionError):
        return text


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 7, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**30])
    if kind == 2:
        return rng.choice([0.1, 1e16, 1e-7, -0.0, 3.0, float("inf"), 1.5e300])
    if kind == 3:
        return rng.choice(["", "a\u2028b", "é", "\x00\x1f", '"\\', "\U0001f600", "\ud800x", "\x7f"])
    if kind == 4:
        return f"s{rng.randrange(100)}"
    if kind in (5, 6):
        return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["k", "é", "\ud800", "a b", "\u2028", ""]
    return {rng.choice(keys) + str(i): _value(rng, depth + 1) for i in range(rng.randrange(4))}


def test_pretty_json_is_the_standard_librarys_text() -> None:
    rng = random.Random(5)
    for _ in range(5000):
        text = json.dumps(_value(rng), ensure_ascii=rng.random() < 0.5, allow_nan=True)
        assert pretty_json(text) == _reference(text), text
    odd = ["[" * 300 + "]" * 300, '{"a":NaN}', "1", '"x"', "nul", "[1,2", '{"a":1,"a":2}', ' {"a" : [ ] } ']
    for text in odd:
        assert pretty_json(text) == _reference(text), text
