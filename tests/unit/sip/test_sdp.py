import pytest

from sipbridge.sip.sdp import MediaDescription, SdpError, parse_sdp
from sipbridge.sip.sdp_answer import AudioAnswer, NoCommonCodec, build_answer, build_offer, negotiate_audio


def offer(media: str, session_extra: str = "", connection: str = "c=IN IP4 203.0.113.5\r\n") -> bytes:
    return (
        "v=0\r\no=alice 2890844526 2890844527 IN IP4 203.0.113.5\r\ns=call\r\n"
        f"{connection}t=0 0\r\n{session_extra}{media}"
    ).encode()


AUDIO = "m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"


def test_parse_session():
    sdp = parse_sdp(offer(AUDIO + "a=ptime:30\r\na=sendonly\r\n", session_extra="a=tool:x\r\n"))
    assert sdp.version == 0
    assert (sdp.origin.username, sdp.origin.sess_id, sdp.origin.sess_version) == (
        "alice",
        2890844526,
        2890844527,
    )
    assert (sdp.origin.nettype, sdp.origin.addrtype, sdp.origin.address) == ("IN", "IP4", "203.0.113.5")
    assert (sdp.session_name, sdp.connection, sdp.timing) == ("call", "203.0.113.5", "0 0")
    assert sdp.attributes == [("tool", "x")]
    [audio] = sdp.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        49170,
        "RTP/AVP",
        ["0", "8", "101"],
    )
    assert audio.connection is None
    assert audio.rtpmap() == {0: ("PCMU", 8000, 1), 8: ("PCMA", 8000, 1), 101: ("TELEPHONE-EVENT", 8000, 1)}
    assert audio.fmtp() == {101: "0-15"}
    assert audio.direction == "sendonly"
    assert audio.ptime == 30
    assert sdp.connection_address(audio) == "203.0.113.5"


def test_static_payload_types_without_rtpmap():
    media = MediaDescription(
        "audio", 4000, "RTP/AVP", ["18", "3", "9", "97"], attributes=[("rtpmap", "97 opus/48000/2")]
    )
    assert media.rtpmap() == {
        18: ("G729", 8000, 1),
        3: ("GSM", 8000, 1),
        9: ("G722", 8000, 1),
        97: ("OPUS", 48000, 2),
    }
    assert media.direction == "sendrecv" and media.ptime is None


def test_media_level_connection_wins():
    sdp = parse_sdp(offer("m=audio 4000 RTP/AVP 0\r\nc=IN IP6 2001:db8::1\r\n", connection=""))
    assert sdp.connection is None
    assert sdp.connection_address(sdp.media[0]) == "2001:db8::1"


def test_round_trip():
    text = (
        "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\ni=info\r\nc=IN IP4 192.0.2.1\r\nb=AS:64\r\nt=0 0\r\n"
        "a=group:BUNDLE 0\r\nm=audio 4000 RTP/AVP 0 101\r\nc=IN IP4 192.0.2.2\r\nb=AS:80\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=recvonly\r\n"
        "m=video 0 RTP/AVP 31\r\n"
    )
    sdp = parse_sdp(text)
    assert str(sdp) == text
    assert sdp.to_bytes() == text.encode()
    assert parse_sdp(sdp.to_bytes()) == sdp


def test_lenient_about_lf_and_missing_s_and_t():
    sdp = parse_sdp("v=0\no=- 1 1 IN IP4 10.0.0.1\nc=IN IP4 10.0.0.1\nm=audio 5000 RTP/AVP 8\n")
    assert sdp.session_name == "-" and sdp.timing == "0 0"
    assert negotiate_audio(sdp).codec == "PCMA"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "o=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\ns=-\r\n",
        "v=0\r\no=- x 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=XX IP4 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio x RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm =video 3227 RTP/AVP 31\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ngarbage\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\na=\r\n",
        "v=0\r\no=- " + "9" * 5000 + " 1 IN IP4 1.2.3.4\r\n",
    ],
)
def test_malformed(text):
    with pytest.raises(SdpError):
        parse_sdp(text)


@pytest.mark.parametrize(
    ("formats", "codec", "pt"),
    [("0 8", "PCMU", 0), ("8 0", "PCMA", 8), ("18 8 0", "PCMA", 8), ("3 0", "PCMU", 0)],
)
def test_picks_first_supported_codec_in_offer_order(formats, codec, pt):
    answer = negotiate_audio(parse_sdp(offer(f"m=audio 4000 RTP/AVP {formats}\r\n")))
    assert (answer.codec, answer.payload_type, answer.clock_rate) == (codec, pt, 8000)
    assert answer.dtmf_payload_type is None


def test_supported_order_does_not_override_offer_order():
    answer = negotiate_audio(parse_sdp(offer("m=audio 4000 RTP/AVP 0 8\r\n")), supported=("PCMA", "PCMU"))
    assert answer.codec == "PCMU"


def test_dynamic_payload_type_for_g711():
    media = "m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 pcma/8000\r\n"
    answer = negotiate_audio(parse_sdp(offer(media)))
    assert (answer.codec, answer.payload_type) == ("PCMA", 96)


def test_telephone_event_is_accepted():
    answer = negotiate_audio(parse_sdp(offer(AUDIO)))
    assert answer == AudioAnswer(0, "PCMU", 8000, 101, ("203.0.113.5", 49170), 20, "sendrecv", 0)


def test_telephone_event_at_another_rate_is_ignored():
    media = "m=audio 4000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/48000\r\n"
    assert negotiate_audio(parse_sdp(offer(media))).dtmf_payload_type is None


def test_g729_only_raises_no_common_codec():
    with pytest.raises(NoCommonCodec) as info:
        negotiate_audio(
            parse_sdp(offer("m=audio 4000 RTP/AVP 18 101\r\na=rtpmap:101 telephone-event/8000\r\n"))
        )
    assert str(info.value) == "no common codec: offered G729; supported PCMU, PCMA"
    assert isinstance(info.value, SdpError)


@pytest.mark.parametrize(
    "media",
    [
        "m=video 4000 RTP/AVP 31\r\n",
        "m=audio 0 RTP/AVP 0\r\n",
        "m=audio 4000 RTP/SAVP 0\r\n",
        "",
    ],
)
def test_no_usable_audio_stream(media):
    with pytest.raises(NoCommonCodec, match="no usable audio stream"):
        negotiate_audio(parse_sdp(offer(media)))


@pytest.mark.parametrize(
    ("media", "why"),
    [
        ("m=audio 4000 RTP/SAVP 0\r\n", "RTP/SAVP is not supported (plain RTP/AVP or RTP/AVPF only)"),
        (
            "m=audio 4000 RTP/SAVP 0\r\nm=audio 4002 UDP/TLS/RTP/SAVPF 0\r\n",
            "RTP/SAVP, UDP/TLS/RTP/SAVPF are not supported",
        ),
    ],
)
def test_a_refused_profile_is_named(media, why):
    with pytest.raises(NoCommonCodec) as info:
        negotiate_audio(parse_sdp(offer(media)))
    assert str(info.value).startswith("no usable audio stream: ") and why in str(info.value)
    assert info.value.end_reason == "codec mismatch"


def test_missing_connection_address():
    with pytest.raises(SdpError):
        negotiate_audio(parse_sdp(offer("m=audio 4000 RTP/AVP 0\r\n", connection="")))


@pytest.mark.parametrize(
    ("attribute", "ours"),
    [
        ("a=sendonly\r\n", "recvonly"),
        ("a=recvonly\r\n", "sendonly"),
        ("a=inactive\r\n", "inactive"),
        ("a=sendrecv\r\n", "sendrecv"),
        ("", "sendrecv"),
    ],
)
def test_answer_direction(attribute, ours):
    assert negotiate_audio(parse_sdp(offer("m=audio 4000 RTP/AVP 0\r\n" + attribute))).direction == ours


def test_session_level_direction_applies_when_media_has_none():
    sdp = parse_sdp(offer("m=audio 4000 RTP/AVP 0\r\n", session_extra="a=sendonly\r\n"))
    assert negotiate_audio(sdp).direction == "recvonly"
    sdp = parse_sdp(offer("m=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n", session_extra="a=sendonly\r\n"))
    assert negotiate_audio(sdp).direction == "sendrecv"


def test_ptime_from_offer():
    assert negotiate_audio(parse_sdp(offer("m=audio 4000 RTP/AVP 0\r\na=ptime:30\r\n"))).ptime == 30
    assert (
        negotiate_audio(parse_sdp(offer("m=audio 4000 RTP/AVP 0\r\n", session_extra="a=ptime:40\r\n"))).ptime
        == 40
    )


def test_build_answer():
    sdp = parse_sdp(offer(AUDIO + "a=sendonly\r\n"))
    answer = negotiate_audio(sdp)
    body = build_answer(sdp, answer, local_ip="198.51.100.7", local_port=30000, session_id=42)
    assert body == (
        b"v=0\r\no=sipbridge 42 1 IN IP4 198.51.100.7\r\ns=sipbridge\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"
        b"m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-16\r\na=ptime:20\r\na=recvonly\r\n"
    )


def test_answer_rejects_other_streams_in_order():
    media = (
        "m=video 5000 RTP/AVP 31\r\nm=audio 4000 RTP/SAVP 0\r\nm=audio 4002 RTP/AVP 8\r\n"
        "c=IN IP4 203.0.113.9\r\nm=audio 4004 RTP/AVP 0\r\n"
    )
    sdp = parse_sdp(offer(media))
    answer = negotiate_audio(sdp)
    assert (answer.media_index, answer.codec, answer.remote_addr) == (2, "PCMA", ("203.0.113.9", 4002))
    built = parse_sdp(
        build_answer(sdp, answer, local_ip="::1", local_port=30002, session_id=1, session_version=3)
    )
    assert [(m.media, m.port, m.proto, m.formats) for m in built.media] == [
        ("video", 0, "RTP/AVP", ["31"]),
        ("audio", 0, "RTP/SAVP", ["0"]),
        ("audio", 30002, "RTP/AVP", ["8"]),
        ("audio", 0, "RTP/AVP", ["0"]),
    ]
    assert built.connection == "::1" and built.origin.addrtype == "IP6" and built.origin.sess_version == 3
    assert b"c=IN IP6 ::1\r\n" in build_answer(sdp, answer, local_ip="::1", local_port=30002, session_id=1)


def test_build_offer_negotiates_with_itself():
    body = build_offer(local_ip="192.0.2.10", local_port=20000, session_id=7)
    assert body == (
        b"v=0\r\no=sipbridge 7 1 IN IP4 192.0.2.10\r\ns=sipbridge\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
        b"m=audio 20000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\na=rtcp-mux\r\n"
    )
    answer = negotiate_audio(parse_sdp(body))
    assert (answer.codec, answer.dtmf_payload_type, answer.remote_addr) == (
        "PCMU",
        101,
        ("192.0.2.10", 20000),
    )
    plain = build_offer(
        local_ip="192.0.2.10", local_port=20000, session_id=7, codecs=("PCMA",), dtmf_payload_type=None
    )
    assert b"m=audio 20000 RTP/AVP 8\r\n" in plain and b"telephone-event" not in plain
    with pytest.raises(SdpError):
        build_offer(local_ip="192.0.2.10", local_port=20000, session_id=7, codecs=("SPEEX",))


def test_an_opus_offer_names_it_on_a_dynamic_type_with_dtmf_at_both_clocks():
    body = build_offer(local_ip="192.0.2.10", local_port=20000, session_id=7, codecs=("OPUS", "PCMU"))
    assert b"m=audio 20000 RTP/AVP 111 0 101 102\r\n" in body
    assert b"a=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1;stereo=0;sprop-stereo=0\r\n" in body
    assert b"a=rtpmap:101 telephone-event/8000\r\n" in body
    assert b"a=rtpmap:102 telephone-event/48000\r\n" in body
    answer = negotiate_audio(parse_sdp(body), ("OPUS", "PCMU"))
    assert (answer.codec, answer.clock_rate, answer.dtmf_payload_type, answer.dtmf_clock_rate) == (
        "OPUS",
        48000,
        102,
        48000,
    )


def test_opus_is_answered_first_with_its_fmtp_kept_and_ours_given():
    offer = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0 9 96 101\r\na=rtpmap:96 opus/48000/2\r\n"
        "a=fmtp:96 maxplaybackrate=16000;useinbandfec=1\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    answer = negotiate_audio(parse_sdp(offer), ("OPUS", "G722", "PCMU"))
    assert (answer.codec, answer.payload_type, answer.codec_params) == (
        "OPUS",
        96,
        "maxplaybackrate=16000;useinbandfec=1",
    )
    assert (answer.dtmf_payload_type, answer.dtmf_clock_rate) == (101, 8000)  # the phone's only one
    body = build_answer(parse_sdp(offer), answer, local_ip="127.0.0.1", local_port=5000, session_id=1)
    assert b"a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1;stereo=0;sprop-stereo=0\r\n" in body
    assert negotiate_audio(parse_sdp(offer), ("G722", "PCMU")).codec == "G722"


@pytest.mark.parametrize("mux", [True, False])
def test_rtcp_mux_is_answered_when_offered_and_only_then(mux):
    """RFC 5761 §5.1.1: a=rtcp-mux in the offer's audio stream, and our answer says it too."""
    sdp = parse_sdp(offer(AUDIO + ("a=rtcp-mux\r\n" if mux else "") + "a=sendrecv\r\n"))
    answer = negotiate_audio(sdp)
    body = build_answer(sdp, answer, local_ip="198.51.100.7", local_port=30000, session_id=42)
    assert answer.rtcp_mux is mux
    assert (("rtcp-mux", None) in parse_sdp(body).media[0].attributes) is mux
    assert body.endswith(b"a=sendrecv\r\na=rtcp-mux\r\n" if mux else b"a=sendrecv\r\n")


def test_rtcp_mux_elsewhere_in_the_offer_is_not_the_audio_stream_s():
    """Only the chosen audio stream's own attribute counts: not a session-level one, nor a video's."""
    video = "m=video 5000 RTP/AVP 96\r\na=rtcp-mux\r\n"
    sdp = parse_sdp(offer(AUDIO + video, session_extra="a=rtcp-mux\r\n"))
    assert negotiate_audio(sdp).rtcp_mux is False


def test_our_offer_has_rtcp_mux_unless_told_not_to_and_an_answer_s_decides():
    ours = build_offer(local_ip="192.0.2.10", local_port=20000, session_id=7)
    plain = build_offer(local_ip="192.0.2.10", local_port=20000, session_id=7, rtcp_mux=False)
    assert b"a=rtcp-mux\r\n" in ours and b"rtcp-mux" not in plain
    assert negotiate_audio(parse_sdp(ours)).rtcp_mux is True  # an answer that echoes it: mux
    assert negotiate_audio(parse_sdp(plain)).rtcp_mux is False  # one without: port + 1


def test_sdp_bodies_of_torture_messages():
    body = (
        b"v=0\r\no=bob 280744730 28977631 IN IP4 host.example.com\r\ns=\r\nt=0 0\r\n"
        b"m=audio 22334 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n"
        b"m=video 6024 RTP/AVP 107\r\nc=IN IP6 2001:db8::1\r\na=rtpmap:107 H263-1998/90000\r\n"
    )
    sdp = parse_sdp(body)
    assert [sdp.connection_address(m) for m in sdp.media] == ["192.0.2.1", "2001:db8::1"]
    assert negotiate_audio(sdp).remote_addr == ("192.0.2.1", 22334)
    g726 = parse_sdp(offer("m=audio 6000 RTP/AVP 2\r\na=rtpmap:2 G726-32/8000\r\n"))
    with pytest.raises(NoCommonCodec, match="offered G726-32"):
        negotiate_audio(g726)


@pytest.mark.parametrize(
    ("offered", "answered"), [("30", "30"), ("10", "10"), ("60", "60"), ("25", "20"), ("90", "20")]
)
def test_the_answer_asks_for_the_callers_own_packet_time_when_we_can_play_it(offered, answered):
    sdp = parse_sdp(offer(f"m=audio 4000 RTP/AVP 0\r\na=ptime:{offered}\r\n"))
    answer = negotiate_audio(sdp)
    body = build_answer(sdp, answer, local_ip="127.0.0.1", local_port=5000, session_id=1, session_version=1)
    assert f"a=ptime:{answered}\r\n".encode() in body


@pytest.mark.parametrize(
    ("formats", "supported", "codec"),
    [
        ("0 9", ("G722", "PCMU"), "G722"),
        ("9 0", ("G722", "PCMU"), "G722"),
        ("8 9 0", ("PCMU", "PCMA"), "PCMA"),
    ],
)
def test_the_widest_codec_we_support_wins_over_the_offer_order(formats, supported, codec):
    """G.722 (16 kHz audio) before G.711 whatever the offer's order; among G.711s the offer's."""
    answer = negotiate_audio(parse_sdp(offer(f"m=audio 4000 RTP/AVP {formats}\r\n")), supported=supported)
    assert answer.codec == codec
    if codec == "G722":  # RFC 3551's quirk: 16 kHz audio on an 8000 RTP clock
        assert (answer.payload_type, answer.clock_rate) == (9, 8000)
