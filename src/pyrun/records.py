"""`@dataclass` and `field` for the plain records on the create/run/exec path.

The standard `dataclasses` imports `inspect` (and with it ast, dis, tokenize...):
~4 ms of every `pyrun create`, `run` and `exec`, which is a tenth of a whole
`run`. pyrun's records need only what is here: an __init__ taking the annotated
fields positionally or by keyword, defaults and default factories, and a
readable repr and field-wise equality.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_MISSING = object()


class _Field:
    __slots__ = ("default", "default_factory")

    def __init__(self, default: object, default_factory: object) -> None:
        self.default = default
        self.default_factory = default_factory


def field(*, default: object = _MISSING, default_factory: object = _MISSING) -> object:
    return _Field(default, default_factory)


def dataclass(cls: type | None = None, *, frozen: bool = False) -> Any:
    """@dataclass or @dataclass(frozen=True)."""
    if cls is None:
        return lambda c: _make(c, frozen)
    return _make(cls, frozen)


def _make(cls: type, frozen: bool) -> type:
    names = list(cls.__dict__.get("__annotations__", {}))
    specs: list[tuple[str, object, object]] = []   # (name, default, factory)
    for name in names:
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, _Field):
            specs.append((name, value.default, value.default_factory))
            if value.default is _MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, value.default)
        else:
            specs.append((name, value, _MISSING))

    def __init__(self: object, *args: object, **kwargs: object) -> None:
        if len(args) > len(specs):
            raise TypeError(f"{cls.__name__}() takes {len(specs)} arguments, got {len(args)}")
        for i, (name, default, factory) in enumerate(specs):
            if i < len(args):
                value = args[i]
                if name in kwargs:
                    raise TypeError(f"{cls.__name__}() got multiple values for {name!r}")
            elif name in kwargs:
                value = kwargs.pop(name)
            elif factory is not _MISSING:
                value = factory()  # type: ignore[operator]
            elif default is not _MISSING:
                value = default
            else:
                raise TypeError(f"{cls.__name__}() missing required argument {name!r}")
            object.__setattr__(self, name, value)
        unknown = set(kwargs) - set(names)
        if unknown:
            raise TypeError(f"{cls.__name__}() got unexpected arguments {sorted(unknown)}")

    def __repr__(self: object) -> str:
        return f"{cls.__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in names) + ")"

    def __eq__(self: object, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    def __setattr__(self: object, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of a frozen {cls.__name__}")

    def __hash__(self: object) -> int:
        return hash(tuple(getattr(self, n) for n in names))

    cls.__init__ = __init__   # type: ignore[misc]
    cls.__repr__ = __repr__   # type: ignore[assignment]
    cls.__eq__ = __eq__       # type: ignore[assignment]
    if frozen:
        cls.__setattr__ = __setattr__   # type: ignore[assignment]
        cls.__hash__ = __hash__         # type: ignore[assignment]
    else:
        cls.__hash__ = None     # type: ignore[assignment]   # as dataclasses does with eq
    return cls
