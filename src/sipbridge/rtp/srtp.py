"""SRTP (RFC 3711) for one call's phone stream: libsrtp sessions, one for each direction.

The keys come from SDES (sip/sdes.py) as base64 master key||salt; they stay inside these objects.
"""

from __future__ import annotations

import base64

import pylibsrtp

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "AEAD_AES_256_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}


class SrtpError(Exception):
    """A packet that does not authenticate (or replays one already seen): it is dropped."""


class Srtp:
    """Protects what we send with our key and unprotects what we receive with the peer's."""

    def __init__(self, suite: str, send_key: str, recv_key: str) -> None:
        self.suite = suite
        self._send = _session(suite, send_key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        self._recv = _session(suite, recv_key, pylibsrtp.Policy.SSRC_ANY_INBOUND)

    def __repr__(self) -> str:
        return f"Srtp({self.suite})"

    def protect(self, packet: bytes) -> bytes:
        return self._send.protect(packet)

    def protect_rtcp(self, packet: bytes) -> bytes:
        return self._send.protect_rtcp(packet)

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        """The RTCP compound packet inside an SRTCP one; raises SrtpError when it does not authenticate."""
        try:
            return self._recv.unprotect_rtcp(packet)
        except (pylibsrtp.Error, ValueError) as exc:
            raise SrtpError(str(exc)) from None

    def unprotect(self, packet: bytes) -> bytes:
        """The RTP packet inside; raises SrtpError when it does not authenticate."""
        try:
            return self._recv.unprotect(packet)
        except (pylibsrtp.Error, ValueError) as exc:  # ValueError: longer than libsrtp takes
            raise SrtpError(str(exc)) from None


def _session(suite: str, key: str, ssrc_type: int) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(key=base64.b64decode(key), ssrc_type=ssrc_type, srtp_profile=PROFILES[suite])
    return pylibsrtp.Session(policy)
