"""One option set per process: a frozen config dataclass is the only list of a server's options.

Its fields carry their help text (and, where a registry owns the accepted names, a function
returning them) in field metadata; `add_arguments` turns the fields into argparse flags,
`from_args` builds the config back from the parsed namespace, and `to_argv` writes the flags
that reproduce a config, so the emulated runner starts each process from a config object
instead of assembling command lines by hand (Vidur's config tree, turned into CLI flags).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Any, Callable, Iterable, Mapping, Sequence


def option(default: Any = dataclasses.MISSING, help: str = "", *,
           default_factory: Any = dataclasses.MISSING,
           choices: Callable[[], Sequence[str]] | None = None, flag: str | None = None,
           metavar: str | None = None, cli: bool = True, required: bool = False) -> Any:
    """A config field with its CLI form: help text, accepted names (from a registry), flag."""
    metadata = {"help": help, "choices": choices, "flag": flag, "metavar": metavar,
                "cli": cli, "required": required}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _cli_fields(config_cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(config_cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(config_cls)
            if f.metadata.get("cli", True)]


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(the type, whether None is allowed) of `T` or `T | None`."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def _is_mapping(hint: Any) -> bool:
    origin = typing.get_origin(hint) or hint
    return isinstance(origin, type) and issubclass(origin, Mapping)


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object (got {text!r})")
    return value


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def add_arguments(parser: argparse.ArgumentParser, config_cls: type,
                  defaults: Mapping[str, Any] | None = None) -> None:
    """One flag per CLI field of `config_cls`; `defaults` overrides a field's CLI default."""
    defaults = dict(defaults or {})
    for f, hint in _cli_fields(config_cls):
        base, _ = _base_type(hint)
        default = defaults.get(f.name, _default_of(f))
        kwargs: dict[str, Any] = {"dest": f.name, "help": f.metadata.get("help") or None}
        if f.metadata.get("metavar"):
            kwargs["metavar"] = f.metadata["metavar"]
        if f.metadata.get("required"):
            kwargs["required"] = True
        else:
            kwargs["default"] = default
            if kwargs["help"] is not None and default not in (None, "", {}):
                kwargs["help"] += " (default %(default)s)"
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif _is_mapping(base):
            kwargs["type"] = _json_object
            kwargs.setdefault("metavar", "JSON")
            if not f.metadata.get("required"):
                kwargs["default"] = dict(default or {})
        elif base in (int, float, str):
            kwargs["type"] = base
        else:
            raise TypeError(f"{config_cls.__name__}.{f.name}: no CLI form for {hint!r}")
        choices = f.metadata.get("choices")
        if choices is not None:
            kwargs["choices"] = list(choices())
        parser.add_argument(_flag(f), **kwargs)


def from_args(config_cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """The config the parsed flags describe (fields without a CLI form keep their default)."""
    values = {f.name: getattr(args, f.name) for f, _ in _cli_fields(config_cls)
              if hasattr(args, f.name)}
    return config_cls(**values, **extra)


def to_argv(config: Any, *, always: Iterable[str] = ()) -> list[str]:
    """The flags that rebuild `config` through add_arguments/from_args: every CLI field whose
    value differs from its default, plus the fields named in `always` and required ones."""
    always = set(always)
    argv: list[str] = []
    for f, hint in _cli_fields(type(config)):
        value = getattr(config, f.name)
        if (f.name not in always and not f.metadata.get("required")
                and value == _default_of(f)):
            continue
        base, _ = _base_type(hint)
        if value is None:
            continue  # None is the default of every optional field
        if base is bool:
            argv.append(_flag(f) if value else "--no-" + _flag(f)[2:])
        elif _is_mapping(base):
            argv += [_flag(f), json.dumps(dict(value), sort_keys=True)]
        else:
            argv += [_flag(f), str(value)]
    return argv
