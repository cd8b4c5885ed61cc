"""The seam's messages on a byte stream: versioned, compact frames for a channel between processes.

A frame is a 4-byte big-endian length and a UTF-8 JSON array: ``[version, kind, seq, call, type,
fields]``. ``kind`` says what the frame is (a command, its reply, an event, a heartbeat), ``seq``
pairs a reply with its command, ``call`` names the call (a worker holds many), ``type`` is the
message's class name in ``messages.py`` and ``fields`` its field values in declaration order, nested
messages as lists of theirs. Decoding is driven by the dataclasses' type hints, so tuples come back
as tuples and nested messages as their classes. JSON keeps it debuggable and needs no dependency;
positional fields keep it small (an UpdateMedia is about 80 bytes).

Within a version a message may only grow by fields with defaults at its end: a frame from a peer
that does not send them yet decodes with the defaults. Any other change raises ``VERSION``.
"""

from __future__ import annotations

import dataclasses
import json
import struct
import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from . import messages

VERSION = 1
HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 20  # a stats snapshot of a call is a few KiB; anything near this is a broken peer

COMMAND, REPLY, EVENT, HEARTBEAT = "c", "r", "e", "h"
KINDS = frozenset((COMMAND, REPLY, EVENT, HEARTBEAT))


class WireError(ValueError):
    """A frame that is not one of ours: wrong version, unknown message, bad shape."""


@dataclass(frozen=True)
class Envelope:
    kind: str
    seq: int
    call: str
    message: Any  # a dataclass of messages.py (or None for a heartbeat)


def _registry() -> dict[str, type]:
    """Every message class by name (with MediaCounters, which messages.py imports for MediaStats)."""
    return {
        name: cls
        for name, cls in vars(messages).items()
        if dataclasses.is_dataclass(cls) and isinstance(cls, type)
    }


TYPES = _registry()


@cache
def _hints(cls: type) -> list[tuple[str, Any]]:
    hints = typing.get_type_hints(cls, vars(messages))
    return [(field.name, hints[field.name]) for field in dataclasses.fields(cls)]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [_plain(getattr(value, name)) for name, _ in _hints(type(value))]
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _typed(hint: Any, value: Any) -> Any:
    if value is None or hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _typed(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_typed(args[0], item) for item in value)
        return tuple(_typed(arg, item) for arg, item in zip(args, value, strict=True))
    if origin is list:
        (arg,) = typing.get_args(hint)
        return [_typed(arg, item) for item in value]
    if origin is dict:
        _, arg = typing.get_args(hint)
        return {key: _typed(arg, item) for key, item in value.items()}
    return value


def _build(cls: type, values: Any) -> Any:
    fields = _hints(cls)
    if not isinstance(values, list) or not _required(cls) <= len(values) <= len(fields):
        raise WireError(f"{cls.__name__}: expected {len(fields)} fields, got {values!r:.100}")
    # zip stops at the values sent: trailing fields an older peer does not know keep their defaults
    return cls(*(_typed(hint, value) for (_, hint), value in zip(fields, values, strict=False)))


@cache
def _required(cls: type) -> int:
    """How many leading fields a frame must carry: those up to the last one without a default."""
    plain = dataclasses.MISSING
    fields = dataclasses.fields(cls)
    defaulted = [f.default is not plain or f.default_factory is not plain for f in fields]
    while defaulted and defaulted[-1]:
        defaulted.pop()
    return len(defaulted)


def encode(envelope: Envelope) -> bytes:
    """One frame, header included."""
    message = envelope.message
    name = type(message).__name__ if message is not None else ""
    body = [VERSION, envelope.kind, envelope.seq, envelope.call, name, _plain(message)]
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return HEADER.pack(len(data)) + data


def decode(data: bytes) -> Envelope:
    """One frame's body (without its length header)."""
    try:
        version, kind, seq, call, name, fields = json.loads(data)
    except (ValueError, TypeError) as exc:
        raise WireError(f"not a frame: {exc}") from exc
    if version != VERSION:
        raise WireError(f"wire version {version!r}, this side speaks {VERSION}")
    if kind not in KINDS or not isinstance(seq, int) or not isinstance(call, str):
        raise WireError(f"bad envelope: {kind!r} {seq!r} {call!r:.40}")
    if not name:
        return Envelope(kind, seq, call, None)
    cls = TYPES.get(name)
    if cls is None:
        raise WireError(f"unknown message {name!r:.60}")
    try:
        return Envelope(kind, seq, call, _build(cls, fields))
    except (TypeError, ValueError) as exc:
        raise WireError(f"{name}: {exc}") from exc


class FrameReader:
    """Sans-IO: bytes in as they come, whole frame bodies out."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames = []
        while len(self._buffer) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buffer)
            if size > self._max:
                raise WireError(f"frame of {size} bytes is over the {self._max} limit")
            end = HEADER.size + size
            if len(self._buffer) < end:
                break
            frames.append(bytes(self._buffer[HEADER.size : end]))
            del self._buffer[:end]
        return frames
