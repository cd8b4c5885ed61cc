"""The seam between a call's signalling and its media: plain-data messages, nothing else.

The signalling side (``calls/``) drives a call's :class:`~sipbridge.media_session.session.MediaSession`
only through the commands below and hears from it only through the events below. Every field is a
str, int, float, bool, None, or a tuple, list or dict of those (or another message), so each
message can be copied across a process boundary as it is: no sockets, futures, callbacks or shared
objects cross. Times are wall-clock seconds (``time.time()``) so they mean the same on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..metrics import MediaCounters

Address = tuple[str, int]


# -- what the settings and offer/answer decided ---------------------------------------------------


@dataclass(frozen=True)
class PhoneMedia:
    """The phone leg as offer/answer settled it: what we send, where, and in which direction."""

    codec: str  # PCMU, PCMA, G722 or OPUS (media/phone_codec.py)
    payload_type: int
    dtmf_payload_type: int | None
    remote: Address | None  # None: the SDP names no address (c=0.0.0.0 hold) or none yet
    direction: str = "sendrecv"  # as we use the stream: sendrecv, sendonly, recvonly, inactive
    # SRTP (SDES): the suite, and the master key||salt in base64 that what we send is protected
    # with (ours) and what we receive (the peer's). None: plain RTP. Keys are never shown.
    srtp_suite: str | None = None
    srtp_send_key: str = field(default="", repr=False)
    srtp_recv_key: str = field(default="", repr=False)
    rtcp_mux: bool = False  # RFC 5761: RTCP on the RTP port (both sides said a=rtcp-mux)
    clock_rate: int = 8000  # the codec's RTP clock (Opus: 48000)
    codec_params: str = ""  # the phone's fmtp for the codec, as it wrote it
    dtmf_clock_rate: int = 8000  # the telephone-event's RTP clock

    @property
    def sending(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")

    @property
    def on_hold(self) -> bool:
        return self.direction in ("recvonly", "inactive")


# -- commands: signalling → media -----------------------------------------------------------------


@dataclass(frozen=True)
class OpenMedia:
    """Take an RTP port for a new call and prepare its agent link (nothing is dialled yet)."""

    call_id: str
    direction: str  # inbound or outbound: the agent is told
    resource_id: str | None  # whom the agent remembers across calls (the phone on the other end)
    signalling: Address | None  # where the call's SIP comes from: its IP may send the phone's RTP
    # where to record the call once answered (.wav or .ogg; media_session/recorder.py); None: not
    record_path: str | None = None


@dataclass(frozen=True)
class MediaOpened:
    port: int  # the local RTP port; the signalling side puts its own address for the peer in the SDP
    worker: int | None = None  # the index of the media worker process holding it; None: this process


@dataclass(frozen=True)
class MediaRefused:
    reason: str  # e.g. "no free RTP port in 10000-10100"


@dataclass(frozen=True)
class UpdateMedia:
    """Offer/answer settled (again): the codec, the phone's address, hold or resume."""

    phone: PhoneMedia
    signalling: Address | None = None


@dataclass(frozen=True)
class StartSending:
    """Run the paced stream towards the phone. Unconfirmed, frames are paced but not transmitted:
    nothing goes to the address an INVITE names before its ACK shows the caller hears us."""

    confirmed: bool = True


@dataclass(frozen=True)
class ConfirmPeer:
    """The ACK came: transmit to the phone as the negotiated direction says."""


@dataclass(frozen=True)
class CallAnswered:
    """The call is up: from now on the phone's silence counts towards the RTP timeout."""


@dataclass(frozen=True)
class ConnectAgent:
    """Dial the agent over WHIP and wait until its media flows (or the timeout). ``context``: the
    first message the agent gets on ``events`` once it opens (``calls/context.py``), on every link."""

    context: dict[str, Any] | None = None


@dataclass(frozen=True)
class AgentConnected:
    pass


@dataclass(frozen=True)
class AgentUnavailable:
    reason: str


@dataclass(frozen=True)
class SendDigits:
    """Digits to the phone, as RFC 4733 events in the RTP stream."""

    digits: str


@dataclass(frozen=True)
class SendAgentEvent:
    """A JSON object for the agent on ``events`` (``POST /calls/{id}/events``)."""

    event: dict[str, Any]


@dataclass(frozen=True)
class DigitsSent:
    digits: str  # those sent (empty when none could be: no telephone-event negotiated)
    at: float


@dataclass(frozen=True)
class ForwardDigit:
    """A digit the phone sent by signalling (SIP INFO): to the agent on its events channel."""

    digit: str


@dataclass(frozen=True)
class StatsRequest:
    pass


@dataclass(frozen=True)
class CloseMedia:
    reason: str


# -- between a worker process and the control process ------------------------------------------------


@dataclass(frozen=True)
class WorkerStatus:
    """A worker's heartbeat: it is alive, what it carries, how late its event loop runs and how
    busy the process has been (CPU over the last seconds, and in all since it started)."""

    pid: int
    sessions: int
    loop_lag_ms: float
    cpu_pct: float = 0.0  # % of one core over the last few seconds (cpu_share.py)
    cpu_s: float = 0.0  # CPU seconds of the process since it started, every thread
    asyncio_tasks: int = 0  # its event loop's tasks: a leak shows as a count that keeps growing


@dataclass(frozen=True)
class StatsBatch:
    """Every listed call's stats snapshot at once: one request per worker, not one per call."""

    calls: list[str]


@dataclass(frozen=True)
class StatsBatchReply:
    stats: dict[str, MediaStats]


@dataclass(frozen=True)
class Failed:
    """The reply to a command the worker could not carry out (an error of ours, not the call's)."""

    reason: str


# -- a stats snapshot -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MediaStats:
    """What the media side counted, as one snapshot (read on request and once more at the end)."""

    counters: MediaCounters = field(default_factory=MediaCounters)
    codec: str | None = None
    on_hold: bool = False
    rtp: dict[str, Any] | None = None
    agent: dict[str, Any] | None = None
    rtp_jitter_s: float | None = None  # the phone stream's interarrival jitter; None before audio
    rtp_loss: float | None = None  # share of the phone's frames missing at playout; None before any


# -- events: media → signalling ----------------------------------------------------------------------


@dataclass(frozen=True)
class PhoneDigit:
    digit: str
    via: str  # rfc4733
    at: float


@dataclass(frozen=True)
class AgentEvent:
    event: dict[str, Any]  # a JSON object from the agent's events channel, as it came
    at: float


@dataclass(frozen=True)
class AgentClosed:
    """The agent hung up: the conversation is over."""

    reason: str


@dataclass(frozen=True)
class AgentFailed:
    """The agent link failed; the media side redials it with the resume token (``recovering``) or,
    with no resume window, gives up at once."""

    reason: str
    recovering: bool


@dataclass(frozen=True)
class AgentRecovered:
    status: str  # the agent's resume status: "resumed", or a new conversation ("new", "unknown", ...)


@dataclass(frozen=True)
class AgentLost:
    """The agent link failed and did not come back within the resume window."""

    reason: str


@dataclass(frozen=True)
class RtpTimeout:
    seconds: float


@dataclass(frozen=True)
class CodecChanged:
    old: str
    new: str


@dataclass(frozen=True)
class RecordingFailed:
    """The call's recording could not be started or written on: its file ends where it stopped."""

    reason: str


@dataclass(frozen=True)
class MediaFailed:
    """The worker process that held the call's media died or stalled (said by the control side)."""

    reason: str


MediaEvent = (
    PhoneDigit
    | AgentEvent
    | DigitsSent
    | AgentClosed
    | AgentFailed
    | AgentRecovered
    | AgentLost
    | RtpTimeout
    | CodecChanged
    | MediaFailed
    | RecordingFailed
)
