"""Command-line flags read from the pydantic models they fill, so a flag cannot drift from
its field: the name (``gpus_per_replica`` -> ``--gpus-per-replica``), the default, the
choices of a ``Literal``, the type and the help text (the field's description). A field
whose type is itself a model (``--replicas N|MIN:MAX``) takes one string that the model's
own validator parses, and a bad value is argparse's usage error with pydantic's message."""

from __future__ import annotations

import argparse
import typing
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from ltx_ray.schema.columns import without_none


def add_model_flags(parser: argparse.ArgumentParser, model: type[BaseModel], names: list[str],
                    **overrides: dict[str, Any]) -> None:
    """One ``--flag`` per field in ``names``; ``overrides[name]`` replaces argparse keywords
    where the command line differs on purpose (a default computed later, say)."""
    for name in names:
        field = model.model_fields[name]
        kind = without_none(field.annotation)
        kwargs: dict[str, Any] = {"dest": name, "help": (field.description or "").replace("%", "%%")}
        if field.default is PydanticUndefined and field.default_factory is None:
            kwargs["required"] = True
        else:
            kwargs["default"] = field.get_default(call_default_factory=True)
        if kind is bool and kwargs.get("default") is False:
            kwargs["action"] = "store_true"
        elif kind is bool and kwargs.get("default") is None:  # --x / --no-x; neither: None, decided later
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is list and typing.get_args(kind) == (str,):
            kwargs.update(action="append", default=None, metavar=name.upper().removesuffix("ES"))
            kwargs["help"] += " (repeat the flag for each)"
        elif typing.get_origin(kind) is list and _is_model(item := typing.get_args(kind)[0]):  # --pool A --pool B
            kwargs.update(action="append", default=None, type=_parsed_by(item))
            kwargs["help"] += " (repeat the flag for each)"
        elif typing.get_origin(kind) is Literal:
            kwargs["choices"] = list(typing.get_args(kind))
        elif kind in (int, float):
            kwargs["type"] = kind
        elif _is_model(kind):
            kwargs["type"] = _parsed_by(kind)
        elif kind is not str:
            raise TypeError(f"{model.__name__}.{name}: no command-line form for {field.annotation!r}")
        kwargs.update(overrides.get(name, {}))
        parser.add_argument("--" + name.replace("_", "-"), **kwargs)


def _is_model(kind) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def _parsed_by(model: type[BaseModel]):
    """An argparse ``type``: the model validated from the flag's string."""

    def parse(text: str) -> BaseModel:
        try:
            return model.model_validate(text)
        except ValidationError as exc:
            raise argparse.ArgumentTypeError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None

    parse.__name__ = model.__name__  # argparse names the type in some messages
    return parse


def flag_values(args: argparse.Namespace, names: list[str], model: type[BaseModel] | None = None) -> dict[str, Any]:
    """The flags' values by field name; a repeatable (list) flag never given keeps the field's default."""
    values = {name: getattr(args, name) for name in names}
    if model is not None:
        lists = {n for n in names if typing.get_origin(without_none(model.model_fields[n].annotation)) is list}
        values = {n: v for n, v in values.items() if not (n in lists and v is None)}
    return values
