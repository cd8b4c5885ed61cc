"""SDP security descriptions for SRTP (SDES, RFC 4568): the ``a=crypto`` lines of an RTP/SAVP stream.

Pure: an attribute list in, the keys out. Each line is ``<tag> <suite> inline:<base64 key||salt>``,
optionally ``|<lifetime>`` and ``|<MKI>:<length>`` after the key. We take only what libsrtp (and
a call) can honour: a single key, no MKI, a lifetime of at least 2^31 packets (over a year of
audio); other lines are skipped, as RFC 4568 lets an answerer do.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass, field

# suite -> (master key bytes, master salt bytes), in the order we prefer them in our own offers.
SUITES: dict[str, tuple[int, int]] = {
    "AES_CM_128_HMAC_SHA1_80": (16, 14),
    "AES_CM_128_HMAC_SHA1_32": (16, 14),
    "AEAD_AES_128_GCM": (16, 12),
    "AEAD_AES_256_GCM": (32, 12),
}
RTP_PROFILES = frozenset({"RTP/AVP", "RTP/AVPF"})
SRTP_PROFILES = frozenset({"RTP/SAVP", "RTP/SAVPF"})
MIN_LIFETIME = 2**31

_TAG = re.compile(r"[0-9]{1,9}")
_LIFETIME = re.compile(r"(?:2\^([0-9]{1,2})|([0-9]{1,20}))")

Attribute = tuple[str, str | None]


@dataclass(frozen=True)
class Crypto:
    """One usable crypto line: its tag, suite and the master key with its salt (never shown)."""

    tag: int
    suite: str
    key: bytes = field(repr=False)

    @property
    def inline(self) -> str:
        """The key and salt in base64, as an ``inline:`` parameter carries it."""
        return base64.b64encode(self.key).decode("ascii")

    def attribute(self) -> Attribute:
        return "crypto", f"{self.tag} {self.suite} inline:{self.inline}"


def is_secure(proto: str) -> bool:
    return proto.upper() in SRTP_PROFILES


def new_crypto(tag: int, suite: str) -> Crypto:
    """A fresh random master key and salt for ``suite``."""
    key_len, salt_len = SUITES[suite]
    return Crypto(tag, suite, secrets.token_bytes(key_len + salt_len))


def offered_cryptos(attributes: list[Attribute]) -> list[Crypto]:
    """The crypto lines of a stream we can use, in the order written."""
    found = (parse_crypto(value) for name, value in attributes if name == "crypto" and value is not None)
    return [crypto for crypto in found if crypto is not None]


def parse_crypto(value: str) -> Crypto | None:
    """One ``a=crypto`` value; None when malformed or a form we cannot honour."""
    parts = value.split()
    if len(parts) != 3 or not _TAG.fullmatch(parts[0]) or parts[1] not in SUITES:
        return None  # session parameters (UNENCRYPTED_SRTP, KDR...) are not for us either
    key_params = parts[2].split(";")
    if len(key_params) != 1 or not key_params[0].startswith("inline:"):
        return None  # several master keys need MKIs
    inline, *rest = key_params[0].removeprefix("inline:").split("|")
    if len(rest) > 1 or (rest and not _long_lifetime(rest[0])):
        return None  # an MKI, or a lifetime that would need rekeying within the call
    try:
        key = base64.b64decode(inline, validate=True)
    except binascii.Error:
        return None
    if len(key) != sum(SUITES[parts[1]]):
        return None
    return Crypto(int(parts[0]), parts[1], key)


def _long_lifetime(text: str) -> bool:
    match = _LIFETIME.fullmatch(text)
    if match is None:
        return False
    power, number = match.groups()
    return (2 ** int(power) if power else int(number)) >= MIN_LIFETIME


def choose(offered: list[Crypto], suites: tuple[str, ...] = tuple(SUITES)) -> Crypto | None:
    """The offered line we answer: the first (in the offer's order) whose suite we support."""
    return next((crypto for crypto in offered if crypto.suite in suites), None)


def no_usable_stream(refused_profiles: list[str], profiles: frozenset[str]) -> str:
    """Why no audio stream of an offer is usable: name the profiles we refused (SRTP, DTLS...)."""
    if not refused_profiles:
        return "no usable audio stream in offer"
    names = ", ".join(dict.fromkeys(refused_profiles))
    verb = "is" if len(set(refused_profiles)) == 1 else "are"
    if not profiles & SRTP_PROFILES:
        only = "plain RTP/AVP or RTP/AVPF"
    elif profiles & RTP_PROFILES:
        only = "RTP/AVP, RTP/AVPF, or RTP/SAVP or RTP/SAVPF with a crypto line we support"
    else:
        only = "SRTP: RTP/SAVP or RTP/SAVPF with a crypto line we support"
    return f"no usable audio stream: {names} {verb} not supported ({only} only)"
