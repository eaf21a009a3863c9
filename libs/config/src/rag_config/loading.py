"""Load settings once per process and turn a bad value into one readable line."""

from __future__ import annotations

import sys
import types
import typing
from functools import cache
from typing import Any, Literal, NoReturn, TypeVar, get_args, get_origin

import annotated_types
from pydantic import SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)

CONFIG_ERROR_EXIT_CODE = 2


class SettingsError(Exception):
    """The environment holds a value the service cannot run with."""


def load_settings(settings_cls: type[S]) -> S:
    """Read ``settings_cls`` from the environment; raise :class:`SettingsError` if invalid."""
    try:
        return settings_cls()
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc, settings_cls)) from None


@cache
def get_settings(settings_cls: type[S]) -> S:
    """The process-wide settings instance of ``settings_cls`` (read once)."""
    return load_settings(settings_cls)


def load_settings_or_exit(settings_cls: type[S], program: str) -> S:
    """Load settings or stop the process with one line on stderr and exit code 2."""
    try:
        return load_settings(settings_cls)
    except SettingsError as exc:
        exit_with_config_error(program, str(exc))


def exit_with_config_error(program: str, message: str) -> NoReturn:
    print(f"{program}: configuration error: {message}", file=sys.stderr)
    raise SystemExit(CONFIG_ERROR_EXIT_CODE)


def describe_validation_error(exc: ValidationError, settings_cls: type[BaseSettings]) -> str:
    """One line naming each bad variable, its value (unless secret) and what is allowed."""
    problems: list[str] = []
    for error in exc.errors(include_url=False):
        field_name = next((str(part) for part in error["loc"] if isinstance(part, str)), None)
        message = str(error["msg"]).removeprefix("Value error, ")
        if field_name is None or field_name not in settings_cls.model_fields:
            problems.append(message)
            continue
        field = settings_cls.model_fields[field_name]
        variable = field_name.upper()
        shown = _shown_value(error.get("input"), field)
        allowed = allowed_values(field)
        line = f"{variable}{shown}: {message}"
        if allowed and not all(part in message for part in allowed.split(", ")):
            line += f" (allowed: {allowed})"
        problems.append(line)
    return "; ".join(problems)


def _shown_value(value: Any, field: FieldInfo) -> str:
    if _is_secret(field.annotation) or isinstance(value, SecretStr):
        return ""
    if isinstance(value, str):
        return f"={value!r}"
    return ""


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in get_args(annotation))


def allowed_values(field: FieldInfo) -> str:
    """Describe what a field accepts, from its type and constraints."""
    annotation = field.annotation
    if get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    if get_origin(annotation) is Literal:
        return ", ".join(str(arg) for arg in get_args(annotation))
    if annotation is bool:
        return "true or false"
    lower = upper = None
    for meta in field.metadata:
        if isinstance(meta, annotated_types.Ge | annotated_types.Gt):
            lower = getattr(meta, "ge", None) or getattr(meta, "gt", None)
            lower_op = ">=" if isinstance(meta, annotated_types.Ge) else ">"
        if isinstance(meta, annotated_types.Le | annotated_types.Lt):
            upper = getattr(meta, "le", None) or getattr(meta, "lt", None)
            upper_op = "<=" if isinstance(meta, annotated_types.Le) else "<"
    kind = "an integer" if annotation is int else "a number" if annotation is float else None
    if kind is None:
        return ""
    if lower is not None and upper is not None:
        return f"{kind} {lower_op} {lower} and {upper_op} {upper}"
    if lower is not None:
        return f"{kind} {lower_op} {lower}"
    return kind
