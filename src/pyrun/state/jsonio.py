"""state.json in and `state`/`list` out, through CPython's _json without the json package.

`import json` compiles its regular expressions and pulls in re and enum: ~3 ms
of every `state`, `start` and `list`, which otherwise import neither. The C
scanner and string encoder json itself uses do the work; the output is
byte-identical to json.dumps (ensure_ascii, default separators). Anything
unusual (bad input, types JSON has no form for) goes to the json package, which
then raises its usual errors.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Imported now, not on first use: _json is a shared library, and the container
# init sends its messages (process/channel) after the host's files are gone.
try:
    from _json import encode_basestring_ascii as _quote, make_scanner as _make_scanner
except ImportError:      # not CPython: the json package does it all
    _quote = _make_scanner = None

_WS = " \t\n\r"
_CONSTANTS = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


class _Context:
    """What _json.make_scanner reads from a JSONDecoder."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_CONSTANTS.__getitem__)


def loads(text: str | bytes) -> Any:
    try:
        if isinstance(text, bytes):
            text = text.decode()        # json.loads also takes UTF-16/32: left to it
        start = len(text) - len(text.lstrip(_WS))
        obj, end = _make_scanner(_Context())(text, start)    # TypeError when None
        if text[end:].strip(_WS):
            raise ValueError("extra data")
        return obj
    except (TypeError, StopIteration, ValueError, RecursionError, SystemError):
        # SystemError: on bad input the C scanner reports through json.decoder's
        # JSONDecodeError, and without the json package loaded it cannot.
        import json
        return json.loads(text)


def dumps(obj: Any, indent: int | None = None, compact: bool = False) -> str:
    """json.dumps(obj, indent=indent); compact: separators=(",", ":"), Go's
    json.Marshal layout (`list --format json`)."""
    try:
        if _quote is None:
            raise _Unusual
        out: list[str] = []
        _encode(obj, out, _quote, -1 if compact else indent, 0)
        return "".join(out)
    except _Unusual:
        import json
        return json.dumps(obj, indent=indent, separators=(",", ":") if compact else None)


class _Unusual(Exception):
    """A value json.dumps would convert or refuse: let it."""


def _encode(o: Any, out: list[str], quote: Any, indent: int | None, level: int) -> None:
    if isinstance(o, str):
        out.append(quote(o))
    elif o is None:
        out.append("null")
    elif o is True:
        out.append("true")
    elif o is False:
        out.append("false")
    elif type(o) is int:
        out.append(int.__repr__(o))
    elif type(o) is float and o == o and o not in (float("inf"), float("-inf")):
        out.append(float.__repr__(o))
    elif isinstance(o, (list, tuple)) and type(o) in (list, tuple):
        if not o:
            out.append("[]")
            return
        sep, pad, end = _layout(indent, level)
        out.append("[" + pad)
        for i, item in enumerate(o):
            if i:
                out.append(sep)
            _encode(item, out, quote, indent, level + 1)
        out.append(end + "]")
    elif type(o) is dict:
        if not o:
            out.append("{}")
            return
        sep, pad, end = _layout(indent, level)
        out.append("{" + pad)
        for i, (k, v) in enumerate(o.items()):
            if type(k) is not str:
                raise _Unusual
            if i:
                out.append(sep)
            out.append(quote(k) + (":" if indent == -1 else ": "))
            _encode(v, out, quote, indent, level + 1)
        out.append(end + "}")
    else:
        raise _Unusual


def _layout(indent: int | None, level: int) -> tuple[str, str, str]:
    """(item separator, after the opening bracket, before the closing one);
    indent -1 is compact."""
    if indent == -1:
        return ",", "", ""
    if indent is None:
        return ", ", "", ""
    inner = "\n" + " " * (indent * (level + 1))
    return "," + inner, inner, "\n" + " " * (indent * level)
