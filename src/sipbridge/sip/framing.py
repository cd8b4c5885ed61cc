"""Message framing for SIP over TCP/TLS (RFC 3261 §18.3), sans-IO.

The transport feeds received bytes to a ``StreamFramer`` and gets back complete messages (head and
body, as received, ready for ``parse_message``) and RFC 5626 keep-alive pings, in arrival order. Any
``FramingError`` means the byte stream can no longer be split reliably: close the connection.
"""

from __future__ import annotations

import re
from enum import Enum

_PING = b"\r\n\r\n"  # RFC 5626 §4.4.1 double-CRLF keep-alive
PONG = b"\r\n"  # the answer to a ``KeepAlive.PING`` (RFC 5626 §4.4.1)

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(rb"\r?\n")
_FOLD = re.compile(rb"\r?\n[ \t]+")
_DIGITS = re.compile(rb"[0-9]+")
_CONTENT_LENGTH_NAMES = (b"content-length", b"l")
_NEWLINE_BYTES = b"\r\n"


class KeepAlive(Enum):
    """A CRLFCRLF ping received between messages; answer it with ``PONG``."""

    PING = "ping"


class FramingError(ValueError):
    """The stream cannot be framed: close the connection.

    ``status`` is the response a UAS could send first if it can still answer (413, 513 or 400).
    """

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        # What the failing ``feed`` call framed before the error, in order: still to be handled.
        self.framed: list[bytes | KeepAlive] = []


class StreamFramer:
    """Split a SIP byte stream into messages by Content-Length, which is mandatory on streams.

    Leading CRLFs before a message are skipped (§7.5) and CRLFCRLF is reported as a ping. A lone
    CRLF (a pong to our ping) is indistinguishable from the start of a ping until more bytes
    arrive, so it is held and never reported. After a ``FramingError`` every ``feed`` raises it again.
    """

    def __init__(self, max_head: int = 16 * 1024, max_body: int = 64 * 1024) -> None:
        self.max_head = max_head
        self.max_body = max_body
        self._buffer = bytearray()
        self._scan_from = 0  # where to resume looking for the end of the head
        self._length: int | None = None  # bytes of the current message, once its head is read
        self._error: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned (a partial message or a partial ping)."""
        return len(self._buffer)

    @property
    def partial(self) -> bool:
        """Part of a message is buffered (a held CR or CRLF, perhaps the start of a ping, is not)."""
        return bool(self._buffer) and not _PING.startswith(self._buffer)

    def feed(self, data: bytes) -> list[bytes | KeepAlive]:
        if self._error is not None:
            raise FramingError(self._error.reason, self._error.status)
        self._buffer += data
        framed: list[bytes | KeepAlive] = []
        try:
            while (item := self._next_item()) is not None:
                framed.append(item)
        except FramingError as error:
            error.framed = framed
            self._error = error
            raise
        return framed

    def _next_item(self) -> bytes | KeepAlive | None:
        if self._length is None:
            ping = self._skip_newlines()
            if ping is not None:
                return ping
            if not self._buffer or self._buffer[0] in _NEWLINE_BYTES:
                return None
            self._length = self._read_head()
            if self._length is None:
                return None
        if len(self._buffer) < self._length:
            return None
        message = bytes(self._buffer[: self._length])
        del self._buffer[: self._length]
        self._length = None
        self._scan_from = 0
        return message

    def _skip_newlines(self) -> KeepAlive | None:
        """Drop CR/LF before a start-line; a CRLFCRLF among them is a ping."""
        buffer = self._buffer
        while buffer and buffer[0] in _NEWLINE_BYTES:
            if buffer.startswith(_PING):
                del buffer[: len(_PING)]
                return KeepAlive.PING
            if _PING.startswith(buffer):
                return None  # may still become a ping
            del buffer[:1]
        return None

    def _read_head(self) -> int | None:
        """The length of the message whose head is buffered; None while the head is incomplete."""
        match = _HEAD_END.search(self._buffer, self._scan_from)
        if match is None:
            # A terminator found later starts at len - 3 at the earliest.
            if len(self._buffer) - 3 > self.max_head:
                raise FramingError("message head too large", 513)
            self._scan_from = max(0, len(self._buffer) - 3)
            return None
        if match.start() > self.max_head:
            raise FramingError("message head too large", 513)
        return match.end() + _content_length(bytes(self._buffer[: match.start()]), self.max_body)


def _content_length(head: bytes, max_body: int) -> int:
    """The body length a head announces (``Content-Length`` or ``l``); mandatory on a stream."""
    lengths = {_parse_length(value, max_body) for value in _content_length_values(head)}
    if not lengths:
        raise FramingError("missing Content-Length")
    if len(lengths) > 1:
        raise FramingError("conflicting Content-Length headers")
    return lengths.pop()


def _content_length_values(head: bytes) -> list[bytes]:
    values = []
    for line in _LINE_END.split(_FOLD.sub(b" ", head))[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.rstrip(b" \t").lower() in _CONTENT_LENGTH_NAMES:
            values.append(value.strip(b" \t"))
    return values


def _parse_length(value: bytes, max_body: int) -> int:
    if not _DIGITS.fullmatch(value):
        raise FramingError("malformed Content-Length")
    digits = value.lstrip(b"0") or b"0"
    # Checked on the digit count first: int() of thousands of digits is slow, then refused.
    if len(digits) > len(str(max_body)) or int(digits) > max_body:
        raise FramingError("message body too large", 413)
    return int(digits)
