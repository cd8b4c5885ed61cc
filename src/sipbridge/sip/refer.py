"""Blind transfer by REFER (RFC 3515, RFC 5589): the request we send, and the progress the
transferee reports in NOTIFYs whose bodies are SIP fragments (``message/sipfrag``, RFC 3420).

Pure: strings and messages in, decisions out.
"""

from __future__ import annotations

import re

from .dialog import Dialog
from .errors import SipParseError
from .message import SipRequest, SipResponse
from .responses import make_response
from .uri import parse_uri

_SIPFRAG_STATUS = re.compile(r"^\s*SIP/2\.0\s+(\d{3})\b")
_NUMBER = re.compile(r"\+?[0-9*#]{1,32}")


class TransferTargetError(ValueError):
    """A transfer target that is neither a phone number nor a sip:/sips: URI."""


def refer_to(target: str, host: str) -> str:
    """The Refer-To value for ``target``: a number becomes ``<sip:NUMBER@host>`` (``host``: where
    the call's phone side is, the PBX or trunk that will place the new call); a sip:/sips: URI is
    used as it is."""
    text = target.strip()
    if _NUMBER.fullmatch(text):
        return f"<sip:{text}@{host}>"
    if re.fullmatch(r"sips?:[^\s<>\"]{1,200}", text, re.IGNORECASE):
        return f"<{text}>"
    raise TransferTargetError(f"transfer target {text[:60]!r} is neither a number nor a sip: URI")


def target_host(target: str) -> str | None:
    """The host of a sip:/sips: target, lower case, without IPv6 brackets (None for a number or
    anything that is not such a URI)."""
    text = target.strip()
    if not re.match(r"sips?:", text, re.IGNORECASE):
        return None
    try:
        return parse_uri(text).host.strip("[]").lower()
    except SipParseError:
        return None


def peer_hostport(remote_target: str) -> str:
    """``host[:port]`` of the dialog's remote target: where a number's Refer-To points."""
    uri = parse_uri(remote_target)
    return f"{uri.host}:{uri.port}" if uri.port else uri.host


def on_peer_host(target: str, remote_target: str) -> bool:
    """Whether a sip: target names the same host as the dialog's remote target (the PBX itself)."""
    host = target_host(target)
    return host is not None and host == target_host(remote_target)


def is_refer_notify(request: SipRequest) -> bool:
    """A NOTIFY of a REFER's implicit subscription (``Event: refer``, with an ``id`` or not)."""
    event = (request.headers.get("Event") or "").split(";", 1)[0].strip().lower()
    return request.method == "NOTIFY" and event == "refer"


def sipfrag_status(body: bytes | None) -> int | None:
    """The status code of a sipfrag body's status line (``SIP/2.0 180 Ringing``); None if it has none."""
    match = _SIPFRAG_STATUS.match((body or b"").decode("utf-8", "replace"))
    return int(match.group(1)) if match else None


def subscription_over(request: SipRequest) -> bool:
    """``Subscription-State: terminated``: the last NOTIFY of the transfer."""
    state = (request.headers.get("Subscription-State") or "").split(";", 1)[0].strip().lower()
    return state == "terminated"


def progress(status: int | None) -> str:
    """What a sipfrag status says of the transfer: trying, ringing, answered or failed."""
    if status is None or status < 180:
        return "trying"
    if status < 200:
        return "ringing"
    return "answered" if status < 300 else "failed"


def refer_request(dialog: Dialog, refer_to_value: str) -> SipRequest:
    """The REFER in ``dialog`` (RFC 3515 §2.4; ``Referred-By``, RFC 3892: our side of the dialog)."""
    request = dialog.create_request("REFER")
    request.headers.add("Refer-To", refer_to_value)
    request.headers.add("Referred-By", f"<{dialog.local_uri}>")
    return request


def answer_notify(request: SipRequest) -> tuple[SipResponse, int | None, bool] | None:
    """A NOTIFY of our REFER's subscription: 200, the sipfrag's status, whether it is the last.
    None for a NOTIFY of anything else (the caller answers it 489 Bad Event, RFC 6665)."""
    if not is_refer_notify(request):
        return None
    return make_response(request, 200), sipfrag_status(request.body), subscription_over(request)
