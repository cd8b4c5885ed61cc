"""The SDP offer of a benchmark call for a codec of the axis, plain or SRTP (``--srtp``), and the keys.

sipp sends the offer (``bench/scenarios/uac_bench.xml``, whose SDP is the plain PCMU offer); for
another codec or SRTP the level runs a copy whose media lines are replaced (``scenario``). Per call,
from the injection file: ``[field0]`` the probe's port, ``[field1]`` its SDES master key and salt
(base64; a fresh one per call). Offered: only that codec, payload ``a=ptime:20``; with SRTP,
``RTP/SAVP`` and one ``a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<key>`` line.

The bridge's answer carries its own key, which the probe needs to unprotect what comes back. sipp
picks the crypto line out of the 200 (``ereg``; a 200 without one fails the call) and logs it with
the call's probe port (``-trace_logs``); ``answer_keys`` reads that log once the calls are over.
"""

from __future__ import annotations

import re
from pathlib import Path

from sipbridge.sip.sdes import new_crypto, parse_crypto

from .wire import WireCodec

SUITE = "AES_CM_128_HMAC_SHA1_80"
ANSWER_LOG = "answer_keys.log"

_MEDIA_BLOCK = re.compile(r"^( *)m=audio .*?^ *a=sendrecv *$", re.M | re.S)
_ANSWER_RECV = re.compile(r'(<recv response="200"[^>]*>\n( *)<action>\n)')
_ANSWER_ACTIONS = (
    f'<ereg regexp="a=crypto:1 {SUITE} inline:[A-Za-z0-9+/=]+" search_in="msg" check_it="true" '
    'assign_to="answer_crypto"/>',
    '<log message="[field0] [$answer_crypto]"/>',
)


def media_lines(codec: WireCodec, srtp: bool) -> list[str]:
    """The offer's media section: that codec alone, plain or with one crypto line."""
    proto = "RTP/SAVP" if srtp else "RTP/AVP"
    lines = [f"m=audio [field0] {proto} {codec.payload_type}", *codec.sdp_media()]
    if srtp:
        lines.append(f"a=crypto:1 {SUITE} inline:[field1]")
    return [*lines, "a=ptime:20", "a=sendrecv"]


def scenario(template: str, codec: WireCodec, srtp: bool) -> str:
    """`template` (uac_bench.xml) with the media section for `codec`, and, with SRTP, the actions
    that log the key of the bridge's answer."""
    found = _MEDIA_BLOCK.search(template)
    if found is None:
        raise ValueError("the scenario has no SDP media section (m=audio ... a=sendrecv)")
    indent = found.group(1)
    block = "\n".join(indent + line for line in media_lines(codec, srtp))
    text = template[: found.start()] + block + template[found.end() :]
    if not srtp:
        return text
    recv = _ANSWER_RECV.search(text)
    if recv is None:
        raise ValueError('the scenario has no <recv response="200"> with an <action> to log the answer key')
    actions = "".join(f"{recv.group(2)}  {action}\n" for action in _ANSWER_ACTIONS)
    return text[: recv.end()] + actions + text[recv.end() :]


def new_key() -> bytes:
    """A fresh SDES master key and salt for SUITE (30 bytes)."""
    return new_crypto(1, SUITE).key


def injection_text(ports: list[int], keys: list[str | None]) -> str:
    """sipp's -inf file (SEQUENTIAL): call i's probe port and, with SRTP, its base64 key."""
    rows = (f"{port};{key};" if key else f"{port};" for port, key in zip(ports, keys, strict=True))
    return "SEQUENTIAL\n" + "".join(row + "\n" for row in rows)


def answer_keys(text: str) -> dict[int, bytes]:
    """The bridge's key for each probe port, from sipp's log of the answers ("<port> a=crypto:...");
    lines that are not a usable crypto line are left out."""
    keys: dict[int, bytes] = {}
    for line in text.splitlines():
        port, _, attribute = line.strip().partition(" ")
        crypto = parse_crypto(attribute.removeprefix("a=crypto:")) if port.isdigit() else None
        if crypto is not None and crypto.suite == SUITE:
            keys[int(port)] = crypto.key
    return keys


def read_answer_keys(path: Path) -> dict[int, bytes]:
    try:
        return answer_keys(path.read_text(errors="replace"))
    except FileNotFoundError:
        return {}
