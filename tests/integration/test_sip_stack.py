"""The SIP stack against sipp: message loss, TCP, hold by re-INVITE, offerless INVITE, session timers.

One bridge with its embedded echo agent serves the module, with a Min-SE of 2 s so that a 4 s session
interval is allowed and the session timer tests take seconds. T1 stays 500 ms: 64·T1 is how long the
bridge answers retransmitted requests, which a lossy call needs. Each test calls as its own caller
(the From user), which is how it finds its calls in GET /calls; what sipp sent and received is read
back from its message trace.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sipbridge.media.g711 import ulaw_encode
from testbed import sipp
from testbed.bridge_proc import BridgeProcess, CallWatcher, start_bridge
from testbed.procs import free_port_block, in_background, wait_until
from testbed.sipp import Traced, lost_count, traced

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
]

SESSION_INTERVAL = 4  # Session-Expires in the uac_session_timer_* scenarios


@pytest.fixture(scope="module")
def bridge(logdir: Path) -> Iterator[BridgeProcess]:
    bridge = start_bridge(
        logdir,
        None,  # the embedded echo agent
        env={"SIPBRIDGE_SESSION_MIN_SE": "2"},
    )
    yield bridge
    bridge.proc.stop()
    assert bridge.proc.returncode == 0, bridge.log()
    assert "Traceback" not in bridge.proc.stderr(), bridge.log()


@pytest.fixture(scope="module")
def tone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One second of a 440 Hz tone as headerless 8 kHz mu-law, for sipp's rtp_stream (it loops)."""
    t = np.arange(8000) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    path = tmp_path_factory.mktemp("tone") / "tone.ul"
    path.write_bytes(ulaw_encode(pcm))
    return path


# ------------------------------------------------------------------------------------------ helpers


def _live_call(bridge: BridgeProcess, caller: str, timeout: float = 10) -> dict[str, Any]:
    """The caller's call once it is answered."""
    found = wait_until(
        lambda: next((c for c in bridge.calls() if c["from"] == caller and c["state"] == "answered"), None),
        timeout,
    )
    assert found, f"no answered call from {caller}\n{bridge.log()}"
    return found


def _ended(bridge: BridgeProcess, call_id: str) -> dict[str, Any]:
    assert wait_until(lambda: bridge.call(call_id)[1]["state"] == "ended", 5), bridge.call(call_id)
    return bridge.call(call_id)[1]


def _first(messages: list[Traced], what: str) -> Traced:
    assert len(messages) >= 1, f"no {what} in the trace"
    return messages[0]


# ------------------------------------------------------------------------------------------ tests


def test_calls_survive_20_percent_message_loss(bridge: BridgeProcess, tmp_path: Path) -> None:
    """sipp drops a fifth of what it sends and receives (the ACK aside): retransmissions carry 5 calls."""
    caller = "+15557000001"
    with CallWatcher(bridge, caller) as watcher:
        result = sipp.run_scenario(
            "uac_lossy_call",
            bridge.sip_target,
            calls=5,
            rate=5,
            hold_ms=1000,
            keys={"caller": caller},
            extra_args=["-lost", "20"],
            workdir=tmp_path,
            timeout=60,
            recv_timeout_ms=30000,  # a BYE may need several retransmissions before a 200 gets through
        )
    result.assert_success(calls=5)
    dropped_in, dropped_out = lost_count(result)
    print(f"sipp dropped {dropped_in} received and {dropped_out} sent messages in 5 calls")
    assert dropped_in + dropped_out > 0, f"sipp dropped nothing: the test proved nothing\n{result.report()}"

    assert len(watcher.ids) == 5, watcher.ids
    for call_id in watcher.ids:
        ended = _ended(bridge, call_id)
        assert ended["answered_at"] is not None, ended
        assert ended["end_reason"] == "caller hung up", ended


def test_bye_overtaking_a_lost_ack_ends_the_call_as_hung_up_by_the_caller(
    bridge: BridgeProcess, tmp_path: Path
) -> None:
    caller = "+15557000007"
    with CallWatcher(bridge, caller) as watcher:
        result = sipp.run_scenario(
            "uac_bye_without_ack", bridge.sip_target, hold_ms=200, keys={"caller": caller}, workdir=tmp_path
        )
    result.assert_success(calls=1)
    assert len(watcher.ids) == 1, watcher.ids
    ended = _ended(bridge, watcher.ids[0])
    assert ended["end_reason"] == "caller hung up", ended


def test_caller_requiring_100rel_gets_a_reliable_180_and_our_200_after_its_prack(
    bridge: BridgeProcess, tmp_path: Path
) -> None:
    """RFC 3262 as UAS: Require: 100rel no longer gets 420; the 180 is reliable, its PRACK answered."""
    caller = "+15557000010"
    with CallWatcher(bridge, caller) as watcher:
        result = sipp.run_scenario(
            "uac_100rel_call", bridge.sip_target, hold_ms=500, keys={"caller": caller}, workdir=tmp_path
        )
    result.assert_success(calls=1)
    messages = traced(result)
    ringing = _first([m for m in messages if not m.sent and m.status == 180], "180")
    assert ringing.header("Require") == "100rel" and (ringing.header("RSeq") or "").isdigit(), ringing.text
    prack = _first([m for m in messages if m.sent and m.method == "PRACK"], "PRACK")
    assert prack.header("RAck") == f"{ringing.header('RSeq')} 1 INVITE", prack.text
    answers = [(m.method, m.status) for m in messages if not m.sent and m.status == 200]
    assert answers[:2] == [("PRACK", 200), ("INVITE", 200)], answers
    assert len(watcher.ids) == 1, watcher.ids
    ended = _ended(bridge, watcher.ids[0])
    assert ended["answered_at"] is not None and ended["end_reason"] == "caller hung up", ended


def test_call_over_tcp_with_audio(bridge: BridgeProcess, tone: Path, tmp_path: Path) -> None:
    caller = "+15557000002"
    thread = in_background(
        lambda: sipp.run_scenario(
            "uac_pcmu_audio",
            bridge.sip_target,
            # sipp -t t1: one TCP connection, from a port that must be free for TCP as well
            local_port=free_port_block(1, udp=True, tcp=True),
            extra_args=["-t", "t1"],
            hold_ms=2000,
            keys={"audio_file": tone, "caller": caller},
            workdir=tmp_path,
            timeout=30,
        )
    )
    try:
        call = _live_call(bridge, caller)
        assert wait_until(
            lambda: (r := bridge.call(call["id"])[1]["rtp"])["packets_in"] > 25 and r["packets_out"] > 25, 5
        ), bridge.call(call["id"])
    finally:
        thread.join(40)
    result: sipp.SippResult = thread.result()
    result.assert_success(calls=1)

    messages = traced(result)
    assert messages and all(m.transport == "TCP" for m in messages), result.report()
    ok = _first([m for m in messages if m.status == 200 and m.method == "INVITE"], "200 to the INVITE")
    contact = ok.header("Contact") or ""
    assert ";transport=tcp" in contact.lower(), ok.text
    assert (ok.header("Via") or "").startswith("SIP/2.0/TCP "), ok.text

    ended = _ended(bridge, call["id"])
    assert ended["end_reason"] == "caller hung up", ended
    assert ended["rtp"]["packets_in"] > 50 and ended["rtp"]["packets_out"] > 50, ended


def test_hold_and_resume_by_reinvite(bridge: BridgeProcess, tone: Path, tmp_path: Path) -> None:
    """a=sendonly from the caller: we answer recvonly and stop sending; a=sendrecv: both ways again."""
    caller = "+15557000003"
    thread = in_background(
        lambda: sipp.run_scenario(
            "uac_reinvite_hold",
            bridge.sip_target,
            keys={"audio_file": tone, "caller": caller},
            workdir=tmp_path,
            timeout=30,
        )
    )
    try:
        call = _live_call(bridge, caller)
        view = lambda: bridge.call(call["id"])[1]  # noqa: E731
        assert view()["on_hold"] is False

        held = wait_until(lambda: (v := view())["on_hold"] and v, 5)
        assert held, view()
        assert held["state"] == "answered" and held["agent"]["state"] == "connected", held
        # While held: the caller's audio still arrives, nothing goes back to it.
        out_at_hold = view()["rtp"]["packets_out"]
        in_at_hold = view()["rtp"]["packets_in"]
        time.sleep(0.6)
        during = view()
        assert during["on_hold"] is True, during
        assert during["rtp"]["packets_out"] == out_at_hold, during
        assert during["rtp"]["packets_in"] >= in_at_hold + 15, during

        resumed = wait_until(lambda: (v := view())["on_hold"] is False and v, 5)
        assert resumed, view()
        assert resumed["state"] == "answered" and resumed["agent"]["state"] == "connected", resumed
        out_at_resume = resumed["rtp"]["packets_out"]
        assert wait_until(lambda: view()["rtp"]["packets_out"] >= out_at_resume + 15, 2), view()
    finally:
        thread.join(40)
    result: sipp.SippResult = thread.result()
    result.assert_success(calls=1)

    oks = [m for m in traced(result) if m.status == 200 and m.method == "INVITE"]
    cseqs = {int((m.header("CSeq") or "0").split()[0]): m for m in oks}
    assert set(cseqs) == {1, 2, 3}, [m.first_line for m in oks]
    assert "a=recvonly" in cseqs[2].body and "a=sendrecv" not in cseqs[2].body, cseqs[2].text
    assert "a=sendrecv" in cseqs[3].body, cseqs[3].text

    ended = _ended(bridge, call["id"])
    assert ended["end_reason"] == "caller hung up" and ended["on_hold"] is False, ended


def test_codec_change_by_reinvite(bridge: BridgeProcess, tone: Path, tmp_path: Path) -> None:
    """A re-INVITE offering PCMA only mid-call: answered PCMA, transcoders swapped, audio goes on."""
    caller = "+15557000008"
    thread = in_background(
        lambda: sipp.run_scenario(
            "uac_reinvite_codec",
            bridge.sip_target,
            keys={"audio_file": tone, "caller": caller},
            workdir=tmp_path,
            timeout=30,
        )
    )
    try:
        call = _live_call(bridge, caller)
        view = lambda: bridge.call(call["id"])[1]  # noqa: E731
        assert view()["codec"] == "PCMU"
        changed = wait_until(lambda: (v := view())["codec"] == "PCMA" and v, 5)
        assert changed, view()
        assert changed["state"] == "answered" and changed["agent"]["state"] == "connected", changed
        out_at_change = changed["rtp"]["packets_out"]
        assert wait_until(lambda: view()["rtp"]["packets_out"] >= out_at_change + 15, 2), view()
    finally:
        thread.join(40)
    thread.result().assert_success(calls=1)
    ended = _ended(bridge, call["id"])
    assert ended["end_reason"] == "caller hung up" and ended["codec"] == "PCMA", ended


def test_invite_without_sdp_gets_our_offer_and_takes_the_answer_from_the_ack(
    bridge: BridgeProcess, tone: Path, tmp_path: Path
) -> None:
    caller = "+15557000004"
    thread = in_background(
        lambda: sipp.run_scenario(
            "uac_invite_without_sdp",
            bridge.sip_target,
            hold_ms=2000,
            keys={"audio_file": tone, "caller": caller},
            workdir=tmp_path,
            timeout=30,
        )
    )
    try:
        call = _live_call(bridge, caller)
        assert call["codec"] == "PCMU", call
        assert wait_until(
            lambda: (r := bridge.call(call["id"])[1]["rtp"])["packets_in"] > 25 and r["packets_out"] > 25, 5
        ), bridge.call(call["id"])
    finally:
        thread.join(40)
    result: sipp.SippResult = thread.result()
    result.assert_success(calls=1)

    messages = traced(result)
    invite = _first([m for m in messages if m.sent and m.method == "INVITE" and m.is_request], "INVITE")
    assert invite.body.strip() == "", invite.text
    ok = _first([m for m in messages if m.status == 200 and m.method == "INVITE"], "200 to the INVITE")
    # our offer, widest first: Opus, G.722, then PCMU and PCMA; the ACK's answer took PCMU
    assert re.search(r"^m=audio \d+ RTP/AVP 111 9 0 8\b", ok.body, re.MULTILINE), ok.text
    assert "a=rtpmap:9 G722/8000" in ok.body, ok.text
    ack = _first([m for m in messages if m.sent and m.method == "ACK"], "ACK")
    answer_port = re.search(r"^m=audio (\d+) ", ack.body, re.MULTILINE)
    assert answer_port, ack.text

    ended = _ended(bridge, call["id"])
    assert ended["codec"] == "PCMU" and ended["answered_at"] is not None, ended
    assert ended["end_reason"] == "caller hung up", ended
    # Our RTP went where the ACK's answer said, and came back from there.
    assert ended["rtp"]["remote"] == f"127.0.0.1:{answer_port.group(1)}", ended
    assert ended["rtp"]["packets_in"] > 50 and ended["rtp"]["packets_out"] > 50, ended


@pytest.fixture(scope="module")
def refreshed_call(
    bridge: BridgeProcess, tmp_path_factory: pytest.TempPathFactory
) -> tuple[sipp.SippResult, str]:
    """A call where the bridge is the session refresher (refresher=uas), ended by sipp after two UPDATEs."""
    caller = "+15557000005"
    with CallWatcher(bridge, caller) as watcher:
        result = sipp.run_scenario(
            "uac_session_timer_refresh",
            bridge.sip_target,
            keys={"caller": caller},
            workdir=tmp_path_factory.mktemp("refresh"),
            timeout=30,
            auto_answer=False,  # an UPDATE the scenario does not expect fails the call
        )
    assert len(watcher.ids) == 1, watcher.ids
    return result, watcher.ids[0]


def test_session_timer_bridge_refreshes_with_update_every_half_interval(
    bridge: BridgeProcess, refreshed_call: tuple[sipp.SippResult, str]
) -> None:
    result, call_id = refreshed_call
    result.assert_success(calls=1)
    messages = traced(result)
    ok = _first([m for m in messages if m.status == 200 and m.method == "INVITE"], "200 to the INVITE")
    assert (ok.header("Session-Expires") or "").replace(" ", "") == f"{SESSION_INTERVAL};refresher=uas", (
        ok.text
    )

    ack = _first([m for m in messages if m.sent and m.method == "ACK"], "ACK")
    updates = [m for m in messages if not m.sent and m.is_request and m.method == "UPDATE"]
    assert len(updates) == 2, [m.first_line for m in messages]
    for update in updates:
        assert (update.header("Session-Expires") or "").split(";")[0].strip() == str(SESSION_INTERVAL), (
            update.text
        )
        assert "timer" in (update.header("Supported") or ""), update.text
    # RFC 4028 section 10: the refresher refreshes at half the interval.
    half = SESSION_INTERVAL / 2
    first_gap = updates[0].at - ack.at
    second_gap = updates[1].at - updates[0].at
    print(f"UPDATEs {first_gap:.2f} s after the ACK and {second_gap:.2f} s after the first")
    assert half - 0.3 <= first_gap <= half + 0.7, (first_gap, second_gap)
    assert half - 0.3 <= second_gap <= half + 0.7, (first_gap, second_gap)
    assert not [m for m in messages if not m.sent and m.method == "BYE" and m.is_request], (
        "the bridge hung up"
    )

    ended = _ended(bridge, call_id)
    assert ended["end_reason"] == "caller hung up", ended


def test_session_refresh_update_names_its_sender_as_refresher(
    refreshed_call: tuple[sipp.SippResult, str],
) -> None:
    result, _ = refreshed_call
    updates = [m for m in traced(result) if not m.sent and m.is_request and m.method == "UPDATE"]
    assert updates
    for update in updates:
        assert (update.header("Session-Expires") or "").replace(" ", "").endswith("refresher=uac"), (
            update.text
        )


def test_session_timer_expiry_without_refresh_ends_the_call_with_bye(
    bridge: BridgeProcess, tmp_path: Path
) -> None:
    """refresher=uac and no refresh from the caller: BYE at the interval less min(32, interval/3)."""
    caller = "+15557000006"
    with CallWatcher(bridge, caller) as watcher:
        result = sipp.run_scenario(
            "uac_session_timer_expire",
            bridge.sip_target,
            keys={"caller": caller},
            workdir=tmp_path,
            timeout=30,
            auto_answer=False,
        )
    result.assert_success(calls=1)
    messages = traced(result)
    ack = _first([m for m in messages if m.sent and m.method == "ACK"], "ACK")
    bye = _first(
        [m for m in messages if not m.sent and m.is_request and m.method == "BYE"], "BYE from the bridge"
    )
    reason = bye.header("Reason") or ""
    assert reason.startswith("SIP;cause=200;text=") and "session timer" in reason.lower(), bye.text
    expected = SESSION_INTERVAL - min(32, SESSION_INTERVAL / 3)
    waited = bye.at - ack.at
    print(f"BYE {waited:.2f} s after the ACK (expected {expected:.2f} s)")
    assert expected - 0.3 <= waited <= expected + 0.7, waited
    assert not [m for m in messages if not m.sent and m.method in ("UPDATE", "INVITE") and m.is_request]

    assert len(watcher.ids) == 1, watcher.ids
    ended = _ended(bridge, watcher.ids[0])
    assert ended["end_reason"].startswith("session timer expired"), ended
