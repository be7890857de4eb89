"""The rules every input reader applies to a record's values (ids, numbers, nesting, `media`), so that
the same record gives the same document whichever reader (jsonl or parquet) read it, and the document
can always be written (the document sets between phases are JSONL written by orjson).

Ids (`id_key`):
- a non-blank string is kept as it is; an integer (any size) becomes its exact decimal string;
- missing or null: datatrove's positional id `<file>/<line - 1>` (as before);
- a list or mapping: the record is dropped as `bad_id`;
- anything else (a float such as `2.50`, `true`, an empty or blank string, bytes, a date): the id is
  replaced by the positional one, the original value is kept in `metadata.original_id`, and the record
  is listed as `id_replaced` (counted as `input_id_replaced`, not dropped). A float is never turned into
  a string id (`2.50` and `2.5` are the same float; two large integers can be the same float).

Numbers: an integer outside the 64-bit range (orjson would read it as a float, and cannot write it) is
kept exactly, as its decimal string; the record is listed as `big_int_as_string` (not dropped).

Nesting: a record nested deeper than `MAX_NESTING` levels (in any field) is dropped as `too_deep`; the
writer could not write it, and no real corpus nests that deep.

`media`: datatrove reads a top-level `media` field as a list of media objects; any other value (a
string, a list of something else) stays a plain metadata field and the record is listed as
`media_as_metadata` (not dropped).

Parquet values with no JSON form (binary, decimal, duration) become strings (binary: base64; the
others: their exact text); the file is listed once as `converted_values`, naming the columns.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from decimal import Decimal

import orjson

MAX_NESTING = 100
_INT64 = (-(2**63), 2**64 - 1)  # orjson reads and writes exactly inside this range (i64 and u64)
# One pass of bytes.translate (in C) maps digits to D, `[` and `{` to B, the rest to a space; then a run
# of 19 Ds (a number that may lie outside the 64-bit range) and the count of Bs (an upper bound of the
# nesting) are found in C too: 0.9 us per 550-byte line where a regex search for the digits alone took 5.5.
_SHAPE = bytes(0x44 if 0x30 <= c <= 0x39 else 0x42 if c in (0x5B, 0x7B) else 0x20 for c in range(256))
_LONG_RUN = b"D" * 19


class RecordTooDeep(ValueError):
    pass


def parse_json_record(raw: bytes):
    """(value, number of big integers kept as strings); orjson.JSONDecodeError or RecordTooDeep on failure."""
    value = orjson.loads(raw)
    shape = raw.translate(_SHAPE)
    if shape.count(b"B") > MAX_NESTING and nesting_depth(value) > MAX_NESTING:
        raise RecordTooDeep(f"nested more than {MAX_NESTING} levels deep")
    if _LONG_RUN not in shape:
        return value, 0
    # orjson read integers beyond 64 bits as floats: read the line again keeping every integer exact
    converted = 0

    def exact_int(text: str):
        nonlocal converted
        if len(text.lstrip("-")) <= 20:  # int() of a short text is cheap and never hits the digit limit
            value = int(text)
            if _INT64[0] <= value <= _INT64[1]:
                return value
        converted += 1
        return text  # exact, and writable: the decimal string

    return json.loads(raw, parse_int=exact_int), converted


def nesting_depth(value, stop: int = MAX_NESTING) -> int:
    """Depth of nested lists/mappings (a scalar: 0), counted without recursion, stopping past `stop`."""
    deepest = 0
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > stop:
            break
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def id_verdict(raw_id) -> tuple[str, str | None]:
    """('keep', id string) | ('positional', None) | ('replace', why) | ('drop', why) for an id value."""
    if raw_id is None:
        return "positional", None
    if isinstance(raw_id, (dict, list)):
        return "drop", f"id is a {type(raw_id).__name__}"
    if isinstance(raw_id, str):
        if raw_id.strip():
            return "keep", raw_id
        return "replace", "id is an empty string" if not raw_id else "id is blank"
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        return "keep", str(raw_id)
    return "replace", f"id {raw_id!r} is a {type(raw_id).__name__}, not a string or an integer"


def jsonable_original(value):
    """The original id as metadata can hold it."""
    return value if isinstance(value, (str, int, float, bool)) else to_json_value(value)


def valid_media(value) -> bool:
    """Whether datatrove can build its Media objects from a record's `media` value."""
    if not isinstance(value, list):
        return False
    from datatrove.data import Media

    try:
        for m in value:
            if not isinstance(m, dict):
                return False
            Media(**m)
    except (TypeError, ValueError):
        return False
    return True


def to_json_value(value):
    """A value orjson can write: bytes -> base64, Decimal/timedelta -> text, containers converted inside."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (Decimal, timedelta)):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(v) for v in value]
    return value


def arrow_needs_conversion(t) -> bool:
    """Whether values of arrow type `t` (or nested inside it) have no JSON form."""
    import pyarrow as pa

    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return True
    if pa.types.is_decimal(t) or pa.types.is_duration(t):
        return True
    if pa.types.is_dictionary(t):
        return arrow_needs_conversion(t.value_type)
    if pa.types.is_struct(t):
        return any(arrow_needs_conversion(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return arrow_needs_conversion(t.value_type)
    if pa.types.is_map(t):
        return True  # pairs of (key, value): keys may not be strings
    return False
