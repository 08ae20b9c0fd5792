"""state/jsonio.py must read and write exactly what the json package does."""
from __future__ import annotations

import json

import pytest

from pyrun.spec.template import default_spec
from pyrun.state import jsonio

VALUES = [
    {}, [], "", "é ☃ \u0000 \"quoted\" \\ \n\t", 0, -1, 2**64, 1.5, -0.0, 1e300, True, False, None,
    {"a": {"b": [1, {"c": []}, {}], "d": "x"}, "e": [[], [[]], {"f": None}]},
    {"ociVersion": "1.3.0", "id": "x", "pid": 12, "status": "running", "annotations": {"k": "v"}},
    default_spec(),
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
@pytest.mark.parametrize("indent", [None, 2])
def test_dumps_is_json_dumps(value, indent):
    assert jsonio.dumps(value, indent=indent) == json.dumps(value, indent=indent)


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_loads_round_trips(value):
    text = json.dumps(value)
    assert jsonio.loads(text) == json.loads(text)
    assert jsonio.loads(" \n" + text.encode().decode() + "\n ") == value


@pytest.mark.parametrize("odd", [float("nan"), float("inf"), {1: "int key"}, (1, 2), {"s": {1, 2}}])
def test_unusual_values_go_to_json(odd):
    try:
        expected = json.dumps(odd)
    except TypeError:
        with pytest.raises(TypeError):
            jsonio.dumps(odd)
    else:
        assert jsonio.dumps(odd) == expected


@pytest.mark.parametrize("bad", ["", "{", '{"a": 1} x', "[1,]", "nul", '{"a" 1}'])
def test_bad_input_raises_jsons_error(bad):
    with pytest.raises(json.JSONDecodeError):
        jsonio.loads(bad)


def test_constants_parse_as_json_does():
    text = '[NaN, Infinity, -Infinity, 1E5, -2]'
    got, want = jsonio.loads(text), json.loads(text)
    assert repr(got) == repr(want)
