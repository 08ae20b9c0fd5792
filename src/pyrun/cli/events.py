"""pyrun events [--stats] [--interval 5s] <container-id>"""
from __future__ import annotations

from pyrun.cli.parser import Flag, FlagError, check_args, parse

FLAGS = [Flag(("interval",), "str", "5s"), Flag(("stats",))]

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration ("5s", "1m30s", "1.5s", "250ms"), in seconds."""
    body, sign = text, 1.0
    if body[:1] in "+-" and body:
        sign, body = (-1.0 if body[0] == "-" else 1.0), body[1:]
    if body == "0":
        return 0.0
    total, i = 0.0, 0
    if not body:
        raise ValueError(text)
    while i < len(body):
        j = i
        while j < len(body) and (body[j].isdigit() or body[j] == "."):
            j += 1
        k = j
        while k < len(body) and not (body[k].isdigit() or body[k] == "."):
            k += 1
        number, unit = body[i:j], body[j:k]
        if not number or number == "." or unit not in _UNITS:
            raise ValueError(text)
        total += float(number) * _UNITS[unit]
        i = k
    return sign * total


def main(glob, argv: list[str]) -> int:
    from pyrun.container.events import events
    opts, args = parse(FLAGS, argv)
    check_args("events", args, exactly=1)
    try:
        interval = parse_duration(opts["interval"])
    except ValueError:
        raise FlagError(f'invalid value "{opts["interval"]}" for flag -interval: parse error') from None
    try:
        events(glob.root, args[0], interval, opts["stats"])
    except BrokenPipeError:         # the reader went away (`| head -1`): done, not an error
        import os
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)            # so the interpreter's final flush does not complain
        os.close(null)
    return 0
