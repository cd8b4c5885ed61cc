"""Log output: JSON lines with the call id, redaction of numbers and credentials in both formats."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from sipbridge import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger set up as `sipbridge serve` does, writing into a buffer; restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buffer = io.StringIO()
    yield buffer
    logs.setup("info")  # back to the default redaction state, then to pytest's handlers
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def _setup(buffer: io.StringIO, fmt: str, redact: bool = True, secrets: tuple[str, ...] = ()) -> None:
    logs.setup("debug", fmt, redact, secrets)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)


def _lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("value", "masked"),
    [("+14155550123", "+*******0123"), ("14155550123", "*******0123"), ("1001", "**01"), ("911", "***")],
)
def test_mask_keeps_only_the_last_digits(value: str, masked: str) -> None:
    assert logs.mask(value) == masked


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ('sent INVITE\r\nAuthorization: Digest username="u", response="0123456789abcdef0"\r\n', "0123456789"),
        ('Proxy-Authorization: Digest username="u", nonce="n"', 'nonce="n"'),
        ("headers [('Authorization', 'Bearer abc.def.ghi')]", "abc.def.ghi"),
        ("POST /token with Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi"),
        ("provider config password = 'hunter22' rejected", "hunter22"),
        ('{"api_key": "k-0123456789abcdef"}', "k-0123456789abcdef"),
        ("resume_token=tok-123456 expired", "tok-123456"),
        ("agent at https://user:pa55word@agent.example/whip", "pa55word"),
        ("Contact: <sip:alice:s3cret@192.0.2.1>", "s3cret"),
    ],
)
def test_credentials_are_redacted_even_with_number_redaction_off(line: str, secret: str) -> None:
    for numbers in (True, False):
        out = logs.Redactor(numbers=numbers)(line)
        assert secret not in out and logs.REDACTED in out, out


def test_configured_secrets_are_redacted_wherever_they_appear() -> None:
    redact = logs.Redactor(numbers=False, secrets=("my-api-key-0123456789", "pw", None))
    out = redact("got key my-api-key-0123456789 in a path /x/my-api-key-0123456789/y; pw stays")
    assert "my-api-key" not in out and out.count(logs.REDACTED) == 2 and "pw stays" in out


@pytest.mark.parametrize(
    ("line", "number"),
    [
        ("INVITE sip:+14155550123@trunk.example SIP/2.0", "+14155550123"),
        ('From: "x" <sip:4930123456@10.0.0.1:5060>;tag=1', "4930123456"),
        ("To: <tel:+1-415-555-0123>", "+1-415-555-0123"),
        ("dialling 14155550123 now", "14155550123"),
        ("caller +447700900123 left", "+447700900123"),
        ("INVITE sip:+14155550123;npdi@trunk SIP/2.0", "+14155550123"),
        ("agent resource_id=14155550123", "14155550123"),
    ],
)
def test_phone_numbers_keep_only_their_end(line: str, number: str) -> None:
    out = logs.Redactor(numbers=True)(line)
    assert number not in out, out
    assert logs.Redactor(numbers=False)(line) == line


def test_ordinary_figures_are_not_taken_for_numbers() -> None:
    line = "SIP on 127.0.0.1:5060, RTP ports 10000-20000, call 5f3a1234567890ab, at 1796241702.5, 1-12345@h"
    assert logs.Redactor(numbers=True)(line) == line


def test_json_lines_carry_time_level_logger_message_and_call_id(captured: io.StringIO) -> None:
    _setup(captured, "json")
    log = logging.getLogger("sipbridge.test")
    log.info("plain line")
    logs.call_logger(log, "c0ffee").warning("call %s: two\nlines", "c0ffee")
    try:
        raise ValueError("boom with Authorization: Bearer abc")
    except ValueError:
        log.exception("failed", extra={"call_id": "beef"})
    lines = captured.getvalue().splitlines()
    assert len(lines) == 3  # one object per line, whatever the message holds
    first, second, third = (json.loads(line) for line in lines)
    assert (
        first["level"] == "info" and first["logger"] == "sipbridge.test" and first["message"] == "plain line"
    )
    assert first["time"].endswith("Z") and "T" in first["time"] and "call_id" not in first
    assert second["call_id"] == "c0ffee" and second["message"] == "call c0ffee: two\nlines"
    assert third["call_id"] == "beef" and "ValueError" in third["exception"]
    assert "abc" not in third["exception"]


async def test_the_call_id_follows_the_call_task_but_not_plain_callbacks(captured: io.StringIO) -> None:
    _setup(captured, "json")
    log = logging.getLogger("sipbridge.test")

    async def on_behalf_of_the_call() -> None:
        log.info("in the call's task")
        await asyncio.sleep(0)
        await asyncio.create_task(inner())  # a task the call starts inherits its id

    async def inner() -> None:
        log.info("in a task the call started")

    loop = asyncio.get_running_loop()
    await loop.create_task(on_behalf_of_the_call(), context=logs.call_context("abc123"))
    callback_context = logs.call_context("stale")  # e.g. a socket opened by a call long over
    done = asyncio.Event()
    loop.call_soon(lambda: (log.info("in a socket callback"), done.set()), context=callback_context)
    await done.wait()
    log.info("outside any call")
    lines = {line["message"]: line.get("call_id") for line in _lines(captured)}
    assert lines == {
        "in the call's task": "abc123",
        "in a task the call started": "abc123",
        "in a socket callback": None,
        "outside any call": None,
    }


def test_text_format_adds_the_call_id_when_the_message_lacks_it_and_redacts(captured: io.StringIO) -> None:
    _setup(captured, "text", secrets=("sekrit-token-value",))
    log = logging.getLogger("sipbridge.test")
    logs.call_logger(log, "c0ffee").info("call %s answered (PCMU from %s)", "c0ffee", "+14155550123")
    logs.call_logger(log, "c0ffee").info("agent connected with sekrit-token-value")
    first, second = captured.getvalue().splitlines()
    assert first.endswith("call c0ffee answered (PCMU from +*******0123)"), first
    assert second.endswith(f"agent connected with {logs.REDACTED} [call c0ffee]"), second


def test_redact_user_follows_the_setting(captured: io.StringIO) -> None:
    _setup(captured, "text", redact=True)
    assert logs.redact_user("+14155550123") == "+*******0123"
    _setup(captured, "text", redact=False)
    assert logs.redact_user("+14155550123") == "+14155550123"
    assert logs.redact_user(None) is None
