"""Helpers that make the Python peer nodes answer like the Rust nodes.

The Rust nodes read inputs and parameters through `nano_plugin_abi`'s
`Context::input` / `Context::param`, which convert JSON with serde. These
functions follow the same rules (first item of a list, bare values accepted,
`null` / `[]` counted as missing, parameter value -> graph default ->
definition default, whole floats accepted as integers) and produce the same
error texts, e.g. "input 'text': invalid type: integer `42`, expected a string".

Not a node file: the SDK only loads files called `node.py`. main.py runs from
this directory, so the nodes import it as `compat`.
"""

from decimal import Decimal
import math

__all__ = ["NodeError", "input_value", "param_value", "as_str", "as_bool", "as_f64", "as_u64", "rust_f64", "number"]


class NodeError(Exception):
    """A node failure; the SDK sends str(error) as the `error` status message."""


def rust_f64(x: float) -> str:
    """Formats a float like Rust's `Display` for f64 (no exponent, `10` not `10.0`)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = format(Decimal(repr(float(x))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _unexpected(value) -> str:
    """serde's `Unexpected` description of a JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        text = rust_f64(value)
        if math.isfinite(value) and "." not in text:
            text += ".0"
        return f"floating point `{text}`"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'string "{escaped}"'
    if isinstance(value, list):
        return "sequence"
    if isinstance(value, dict):
        return "map"
    return type(value).__name__


def _invalid_type(value, expected: str) -> ValueError:
    return ValueError(f"invalid type: {_unexpected(value)}, expected {expected}")


def as_str(value) -> str:
    if isinstance(value, str):
        return value
    raise _invalid_type(value, "a string")


def as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    raise _invalid_type(value, "a boolean")


def as_f64(value) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise _invalid_type(value, "f64")


def as_u64(value) -> int:
    if isinstance(value, bool):
        raise _invalid_type(value, "u64")
    if isinstance(value, int):
        if 0 <= value <= 2**64 - 1:
            return value
        raise ValueError(f"invalid value: integer `{value}`, expected u64")
    if isinstance(value, float):
        # A whole float (UIs send 5.0) converts; otherwise serde's float error.
        if math.isfinite(value) and value == int(value) and abs(value) < 9.0e15 and value >= 0:
            return int(value)
        raise _invalid_type(value, "u64")
    raise _invalid_type(value, "u64")


def input_value(ctx, name: str, convert):
    """First value of input `name` (list or bare value), converted; NodeError if missing."""
    inputs = ctx.inputs if isinstance(ctx.inputs, dict) else {}
    value = inputs.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        raise NodeError(f"missing input '{name}'")
    try:
        return convert(value)
    except ValueError as err:
        raise NodeError(f"input '{name}': {err}") from None


def param_value(ctx, definition: dict, name: str, convert):
    """Parameter `name`: graph value, else graph default, else the definition's default."""
    value = None
    for param in ctx.parameters or []:
        if isinstance(param, dict) and param.get("name") == name:
            value = param.get("value")
            if value is None:
                value = param.get("default")
            break
    declared = next((p for p in definition.get("parameters", []) if p.get("name") == name), None)
    if value is None and declared is not None:
        value = declared.get("default")
        if value is None:
            value = declared.get("value")
    if value is None:
        if declared is not None:
            raise NodeError(f"parameter '{name}' has no value and no default")
        raise NodeError(f"unknown parameter '{name}'")
    try:
        return convert(value)
    except ValueError as err:
        raise NodeError(f"parameter '{name}': {err}") from None


def number(x: float):
    """Whole results are sent as integers (`42`, not `42.0`), as the Rust node does."""
    if math.isfinite(x) and x == int(x) and abs(x) < 9.0e15:
        return int(x)
    return x
