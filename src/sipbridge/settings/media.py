"""The declarations of the media settings (RTP towards the phone, Opus towards the agent) and of
the agent link's."""

from __future__ import annotations

from dataclasses import dataclass

from ..media.opus import APPLICATIONS, OpusSettings
from ..media.phone_codec import CODECS
from .declare import setting
from .values import (
    TEXT,
    Between,
    Choice,
    Flag,
    HostPort,
    IpAddress,
    Listen,
    ListOf,
    NonNegative,
    Number,
    PortRange,
    Ports,
    Positive,
    Url,
    Whole,
    Workers,
)

LATCH_MODES = ("sdp-or-signalling", "sdp", "any")  # rtp/latch.py's LatchMode
PCM_RATES = (8000, 16000, 48000)  # the rates the polyphase resampler reaches from 8 kHz
SRTP_MODES = ("off", "optional", "required")
PHONE_CODECS = tuple(CODECS)  # the phone leg's codecs (media/phone_codec.py)
CODECS_HELP = (
    "Empty: every codec the bridge speaks (OPUS, G722, PCMU, PCMA): the widest offered is answered (among"
    " the G.711s the offer's own order) and our offers list them widest first. A list: only those,"
    " the first of the list that the offer has is answered, our offers in the list's order."
)


@dataclass(frozen=True)
class MediaSettings:
    """Media

    RTP towards the phone, the shared 20 ms clock, and how Opus is coded towards the agent.
    """

    rtp_ports: PortRange = setting(
        PortRange(10000, 20000),
        Ports(),
        "RTP port range",
        more="Even ports, one per call, each picked at random among the free ones so a call's port"
        " cannot be guessed.",
        flag=True,
    )
    workers: int = setting(
        0,
        Workers(),
        "media worker processes",
        shown_default="auto",
        flag=True,
        more="Each call's media (RTP, jitter buffer, codecs, the agent's WebRTC link, DTMF) runs in one"
        " of these processes, SIP, the API and the call registry in the control process. `auto`: one"
        " per CPU the process may use (`os.sched_getaffinity`), at most one per two RTP ports. The RTP"
        " range is split among them; a worker that dies or stalls takes only its own calls (they end"
        " with `media worker failed`) and is replaced.",
    )
    rtp_latch: str = setting(
        "sdp-or-signalling",
        Choice(LATCH_MODES),
        "whose RTP a call accepts (and answers: symmetric RTP)",
        more="`sdp-or-signalling`: the address and port the phone's SDP names, or the IP its SIP comes"
        " from on any port (phones behind NAT); `sdp`: only exactly what the SDP names (no NAT"
        " traversal); `any`: any address (for carriers whose media comes from addresses their SDP and"
        " signalling do not name; **unsafe**: a stranger can take a quiet call's audio). The first"
        " accepted packet latches; another source allowed by the setting takes over only after 5"
        " consecutive in-sequence packets, once the current one has been silent for 1 s (a NAT that"
        " moved the port). Other sources the setting allows are heard but not answered (a phone's"
        " RFC 4733 events from another port); RTP from anyone else is dropped and counted"
        " (`foreign_in` in `GET /calls`), never played; a re-INVITE naming a new address starts over."
        " Nothing is sent before the INVITE's ACK.",
    )
    srtp: str = setting(
        "optional",
        Choice(SRTP_MODES),
        "SRTP (RFC 3711) with SDES keys (RFC 4568) on the phone leg",
        more="`off`: plain RTP only, an offer of `RTP/SAVP` alone gets `488`; `optional`: an `RTP/SAVP`"
        " offer is answered in kind, our own offers are plain `RTP/AVP`; `required`: a plain offer gets"
        " `488` (its Warning names the profile) and our offers are `RTP/SAVP`. Suites:"
        " AES_CM_128_HMAC_SHA1_80, AES_CM_128_HMAC_SHA1_32, AEAD_AES_128_GCM, AEAD_AES_256_GCM; a"
        " crypto line with an MKI or a lifetime under 2^31 is skipped. The keys travel in the SDP: use"
        " SIP over TLS (a warning at start-up says when they may not). A provider's own `srtp` wins"
        " for its calls.",
    )
    codecs: tuple[str, ...] = setting(
        (),
        ListOf(Choice(PHONE_CODECS, upper=True)),
        "the phone leg's codecs, in our order of preference (empty: all, the widest first)",
        more=CODECS_HELP + " A provider's own `codecs` wins for its calls.",
    )
    rtp_timeout: float = setting(
        30.0,
        NonNegative("seconds"),
        "seconds without RTP from the phone before the call is ended with BYE (0: never)",
        more="Paused while the caller holds the call.",
    )
    clock_slot_ms: int = setting(
        2,
        Number((1, 2, 4, 5, 10, 20), "milliseconds"),
        "grid of the shared 20 ms clock",
        more="Each call's ticks are placed where its frames fall due, rounded up to it; wider slots wake"
        " the event loop less often (less CPU) for up to that much more delay each way.",
    )
    opus_bitrate: int = setting(
        OpusSettings.bitrate, Positive(int, "bits a second"), "Opus bitrate towards the agent"
    )
    opus_application: str = setting(
        OpusSettings.application,
        Choice(tuple(APPLICATIONS)),
        "libopus mode",
        more="`lowdelay` (CELT only: 2.5 ms lookahead), `audio` (6.5 ms; the same quality and cost at"
        " 32 kbit/s in the phone band), `voip` (6.5 ms; SILK, for low bitrates).",
    )
    opus_complexity: int = setting(
        OpusSettings.complexity,
        Whole(0, 10),
        "libopus complexity",
        more="In the telephone band 1 gives the same SNR as 10 at half the CPU.",
    )
    opus_fec: bool = setting(
        OpusSettings.fec,
        Flag(),
        "in-band FEC towards the agent",
        more="Costs encode time; useful when the agent leg loses packets. Needs `opus_application`"
        " `voip` or `audio`.",
    )
    opus_pcm_rate: int = setting(
        OpusSettings.pcm_rate,
        Number(PCM_RATES, "Hz"),
        "PCM rate handed to and taken from libopus",
        more="`8000` codes the phone's band natively with no resampling; `16000`/`48000` resample (the"
        " wire is 48 kHz-clock Opus either way).",
    )

    @property
    def opus(self) -> OpusSettings:
        """The opus_* settings as the one value the media objects take."""
        return OpusSettings(
            bitrate=self.opus_bitrate,
            application=self.opus_application,
            complexity=self.opus_complexity,
            fec=self.opus_fec,
            pcm_rate=self.opus_pcm_rate,
        )


@dataclass(frozen=True)
class AgentSettings:
    """The agent

    The voice agent the calls go to, over WHIP and WebRTC.
    """

    agent: str | None = setting(
        None,
        Url(),
        "WHIP endpoint of the voice agent",
        flag=True,
        shown_default="the embedded echo agent",
    )
    agent_token: str | None = setting(
        None, TEXT, "bearer token for the WHIP POST and DELETE (never logged)", secret=True
    )
    agent_timeout: float = setting(
        10.0,
        Positive(float, "seconds"),
        "seconds to get the agent's WHIP answer before the caller gets 503",
    )
    # Seconds with nothing from the agent (not even RTCP) before its link counts as failed.
    agent_silence_timeout: float = setting(
        5.0,
        Between(1.0, 60.0, "seconds"),
        "seconds with nothing at all from the agent (no audio, no RTCP) before its link counts as failed",
    )
    # After the agent link fails mid-call: how long to keep redialling with the resume token
    # (the StreamCore server keeps a dropped session about 30 s); 0: hang up at once.
    agent_resume_window: float = setting(
        20.0,
        Between(0.0, 300.0, "seconds"),
        "after the agent link fails mid-call, how long to keep redialling with the resume token",
        more="`0`: hang up at once; the StreamCore server keeps a dropped session about 30 s.",
    )
    ice_servers: tuple[str, ...] = setting((), ListOf(), "STUN/TURN URLs for the agent leg")
    ice_host_addresses: tuple[str, ...] = setting(
        (),
        ListOf(IpAddress()),
        "local addresses offered as ICE host candidates to the agent",
        shown_default="auto: loopback for a loopback agent URL, else every non-loopback interface",
    )
    embedded_agent_listen: HostPort = setting(
        HostPort("127.0.0.1", 0),
        Listen(),
        "address of the embedded echo agent started when no agent is set",
    )
