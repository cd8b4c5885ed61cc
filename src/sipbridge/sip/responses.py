"""Building SIP responses (RFC 3261 §8.2.6, §21), sans-IO: the reason phrases, the copy of a request's
identifying headers, and the answers the UA gives by itself (refusals with a Warning, 405/501 with
Allow, the headers of an OPTIONS answer, a broken request's 400).
"""

from __future__ import annotations

import hashlib

from .errors import SipParseError
from .headers import parse_name_addr
from .message import Headers, SipRequest, SipResponse

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, PRACK"
SUPPORTED = "timer, 100rel"
# Methods we know but do not serve here: 405 with Allow. Anything else: 501 (RFC 3261 §8.2.1).
KNOWN_METHODS = frozenset({"REGISTER", "SUBSCRIBE", "NOTIFY", "MESSAGE", "REFER", "PUBLISH", "PRACK"})

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    429: "Provide Referrer Identity",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}
_CLASS_REASONS = {1: "Provisional", 2: "Success", 3: "Redirection", 4: "Client Error", 5: "Server Error"}


def default_reason(status: int) -> str:
    return REASON_PHRASES.get(status) or _CLASS_REASONS.get(status // 100, "Global Failure")


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> SipResponse:
    """Build a response per RFC 3261 §8.2.6 (Via, From, To, Call-ID, CSeq copied)."""
    headers = Headers()
    for name, value in request.headers.items():
        if name == "Via":
            headers.add(name, value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        value = request.headers.get(name)
        if value is not None:
            headers.add(name, _with_to_tag(value, to_tag) if name == "To" and to_tag else value)
    timestamp = request.headers.get("Timestamp")
    if status == 100 and timestamp is not None:
        headers.add("Timestamp", timestamp)
    if content_type is not None:
        headers.add("Content-Type", content_type)
    for name, value in extra or ():
        headers.add(name, value)
    return SipResponse(status, reason if reason is not None else default_reason(status), headers, body)


def _with_to_tag(value: str, tag: str) -> str:
    try:
        if parse_name_addr(value).tag is not None:
            return value
    except SipParseError:
        return value
    return f"{value};tag={tag}"


def refusal(
    request: SipRequest,
    status: int,
    *,
    host: str,
    reason: str | None = None,
    warning: str | None = None,
    retry_after: int | None = None,
    extra: list[tuple[str, str]] | None = None,
    tag: str | None = None,
) -> SipResponse:
    """A failure response whose Warning (from ``host``) says why, for the operator reading a trace.

    Without ``tag`` a request with no To tag gets ``stateless_tag``: the same for its retransmissions.
    """
    headers = list(extra or [])
    if warning:
        text = " ".join(warning.split()).replace('"', "'")[:200]
        headers.append(("Warning", f'399 {host} "{text}"'))
    if retry_after is not None:
        headers.append(("Retry-After", str(retry_after)))
    to_tag = None if request.to.tag else (tag or stateless_tag(request))
    return make_response(request, status, reason, to_tag=to_tag, extra=headers)


def unserved(request: SipRequest, host: str) -> SipResponse:
    """405 for methods we know but do not serve, 501 for the rest (§8.2.1), both with Allow."""
    status = 405 if request.method in KNOWN_METHODS else 501
    return refusal(request, status, host=host, extra=[("Allow", ALLOW)])


def capabilities() -> list[tuple[str, str]]:
    """What our INVITEs and 2xx say we do (§20.5, §20.37)."""
    return [("Allow", ALLOW), ("Supported", SUPPORTED)]


def allowed_methods(message: SipRequest | SipResponse) -> set[str]:
    """The methods a peer's Allow header lists, upper-cased."""
    return {method.strip().upper() for method in message.headers.get_all("Allow")}


def record_route(request: SipRequest) -> list[tuple[str, str]]:
    """The Record-Route headers a dialog-creating response copies (§12.1.1)."""
    return [("Record-Route", value) for value in request.headers.get_all("Record-Route")]


def options_ok(request: SipRequest) -> SipResponse:
    """The 200 to an out-of-dialog OPTIONS (§11.2): what we allow, accept and support."""
    extra = [("Allow", ALLOW), ("Accept", "application/sdp"), ("Supported", SUPPORTED)]
    return make_response(request, 200, to_tag=stateless_tag(request), extra=extra)


def stateless_tag(request: SipRequest) -> str:
    """The To tag of a response sent without a transaction: the same for a retransmission of the same
    request (§8.2.7), derived from its branch and Call-ID."""
    branch = (request.via[0].branch or "") if request.via else ""
    return hashlib.sha256(f"{branch}|{request.call_id}".encode()).hexdigest()[:16]


def parse_error_reason(exc: SipParseError) -> str:
    """The reason phrase of the answer to a message we could not parse: the code's, with why."""
    phrase = REASON_PHRASES.get(exc.status, "Bad Request")
    text = " ".join(exc.reason.split())[:120]
    return f"{phrase} ({text})" if text else phrase


def parse_error_response(request: SipRequest, exc: SipParseError) -> SipResponse:
    """The 400 (or 416, 420, 505 ...) to a broken request, built from what could be salvaged of it."""
    return make_response(request, exc.status, parse_error_reason(exc))
