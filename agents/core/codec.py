"""The one place where messages are (de)serialised: orjson, fixed options, pydantic at the edge."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from agents.core.errors import InvalidMessage

__all__ = ["MAX_MESSAGE_BYTES", "decode", "dumps", "encode", "invalid_from", "loads", "validate"]

# Largest value accepted from a topic or file line; anything bigger is dead-lettered unparsed.
MAX_MESSAGE_BYTES = 64 * 1024

ModelT = TypeVar("ModelT", bound=BaseModel)

_DUMP_OPTIONS = orjson.OPT_SORT_KEYS


def dumps(value: Any) -> bytes:
    """Serialise plain data (dicts, lists, dataclasses) to JSON bytes."""
    return orjson.dumps(value, option=_DUMP_OPTIONS)


def loads(raw: bytes | str) -> Any:
    """Parse JSON bytes; raise InvalidMessage naming `<json>` when they do not parse."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage("<json>", f"not valid JSON ({exc})") from None


def encode(model: BaseModel) -> bytes:
    """Serialise a record."""
    return orjson.dumps(model.model_dump(mode="json"), option=_DUMP_OPTIONS)


def decode(model: type[ModelT], raw: bytes | str | None) -> ModelT:
    """Parse and validate raw bytes into `model`; errors name the field and the value."""
    if raw is None:
        raise InvalidMessage("<value>", "empty message (no value)")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage("<value>", f"{len(raw)} bytes, larger than {MAX_MESSAGE_BYTES}")
    data = loads(raw)
    if not isinstance(data, dict):
        raise InvalidMessage("<json>", f"expected a JSON object, got {type(data).__name__}")
    return validate(model, data)


def validate(model: type[ModelT], data: dict[str, Any]) -> ModelT:
    """Validate a parsed object into `model`, turning the first error into InvalidMessage."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_from(exc) from None


def invalid_from(exc: ValidationError) -> InvalidMessage:
    """The first pydantic error as an InvalidMessage that names field and value."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or "<value>"
    # A validator's own ValueError reads "Value error, <why>": the why is the message.
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] != "missing":
        message = f"{message} (got {_preview(first.get('input'))})"
    return InvalidMessage(field, message)


def _preview(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
