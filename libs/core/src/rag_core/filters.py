"""Metadata filters in the Mongo-style operators Chroma supports, validated before use.

``{"year": {"$gte": 2020}, "lang": "en"}`` and ``{"$or": [{"a": 1}, {"b": {"$in": [2, 3]}}]}``
are valid. Anything else is refused with a message naming the part that is wrong, so a bad
filter is a 422 for the caller and never an error from Chroma.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rag_core.errors import InvalidInput

COMPARISONS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
MEMBERSHIP = frozenset({"$in", "$nin"})
LOGICAL = frozenset({"$and", "$or"})
MAX_DEPTH = 8
MAX_TERMS = 100
INT64 = (-(2**63), 2**63 - 1)  # the integers Chroma stores and compares
Scalar = str | int | float | bool


class InvalidFilter(InvalidInput):
    problem = "invalid-filter"
    title = "Invalid filter"


def _fail(path: str, message: str) -> InvalidFilter:
    return InvalidFilter.for_field(path, message)


def _scalar(value: Any, path: str) -> Scalar:
    if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
        # Chroma refused it ("Invalid where clause", its 400 as ours), BM25 matched nothing.
        raise _fail(path, "an integer beyond 64 bits, which no stored value can be")
    if isinstance(value, bool | int | str) or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise _fail(path, "must be a string, number or boolean")


def validate_filter(where: Any, *, path: str = "filter") -> dict[str, Any]:
    """The filter in Chroma's form (implicit AND of several fields made explicit)."""
    return _validate(where, path, 0, [0])


def _validate(where: Any, path: str, depth: int, counter: list[int]) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise _fail(path, f"nested deeper than {MAX_DEPTH} levels")
    if not isinstance(where, dict) or not where:
        raise _fail(path, "must be a non-empty object")
    clauses: list[dict[str, Any]] = []
    for key, value in where.items():
        counter[0] += 1
        if counter[0] > MAX_TERMS:
            raise _fail(path, f"more than {MAX_TERMS} terms")
        here = f"{path}.{key}"
        if key in LOGICAL:
            if not isinstance(value, list) or len(value) < 2:
                raise _fail(here, "needs a list of at least two conditions")
            parts = [_validate(v, f"{here}[{i}]", depth + 1, counter) for i, v in enumerate(value)]
            clauses.append({key: parts})
        elif key.startswith("$"):
            raise _fail(here, f"unknown operator (use {', '.join(sorted(LOGICAL))} here)")
        elif not key:
            raise _fail(here, "a field name must not be empty")
        elif key.startswith("_"):
            raise _fail(here, "fields starting with '_' are internal and cannot be filtered")
        else:
            clauses.append({key: _condition(value, here)})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _condition(value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        return {"$eq": _scalar(value, path)}
    if len(value) != 1:
        raise _fail(path, "use one operator per condition (combine with $and)")
    operator, operand = next(iter(value.items()))
    where = f"{path}.{operator}"
    if operator in COMPARISONS:
        scalar = _scalar(operand, where)
        if operator in ("$gt", "$gte", "$lt", "$lte") and isinstance(scalar, str | bool):
            raise _fail(where, "ordering comparisons need a number")
        return {operator: scalar}
    if operator in MEMBERSHIP:
        if not isinstance(operand, list) or not operand:
            raise _fail(where, "needs a non-empty list")
        if len(operand) > MAX_TERMS:
            raise _fail(where, f"more than {MAX_TERMS} values")
        items = [_scalar(v, f"{where}[{i}]") for i, v in enumerate(operand)]
        if len({type(v) for v in items}) > 1:
            raise _fail(where, "values must all be of one type")
        return {operator: items}
    raise _fail(where, "unknown operator (use $eq $ne $gt $gte $lt $lte $in $nin)")


def matches(where: Mapping[str, Any], metadata: Mapping[str, Any]) -> bool:
    """Whether ``metadata`` satisfies a filter ``validate_filter`` returned, as Chroma decides
    it (the lexical index filters its own hits with this): a condition on a field the record
    does not have is false, except ``$ne`` and ``$nin``, and values compare only with values of
    the same kind (a boolean is not a number)."""
    (key, value), *rest = where.items()
    assert not rest, "validate_filter makes every AND explicit"
    if key == "$and":
        return all(matches(part, metadata) for part in value)
    if key == "$or":
        return any(matches(part, metadata) for part in value)
    (operator, operand), *_ = value.items()
    if key not in metadata:
        return operator in ("$ne", "$nin")
    field = metadata[key]
    if isinstance(field, int) and not isinstance(field, bool):
        # Chroma compares an integer field with a float operand cut to an integer (x = 2.5
        # matches x = 2); doing the same keeps lexical and dense results alike.
        operand = (
            [_as_int(item) for item in operand] if isinstance(operand, list) else _as_int(operand)
        )
    if operator == "$in":
        return any(_same(field, item) for item in operand)
    if operator == "$nin":
        return not any(_same(field, item) for item in operand)
    if operator == "$eq":
        return _same(field, operand)
    if operator == "$ne":
        return not _same(field, operand)
    if isinstance(field, bool) or not isinstance(field, int | float):
        return False
    if operator == "$gt":
        return bool(field > operand)
    if operator == "$gte":
        return bool(field >= operand)
    if operator == "$lt":
        return bool(field < operand)
    return bool(field <= operand)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return bool(a == b)


def _as_int(value: Any) -> Any:
    return int(value) if isinstance(value, float) else value
