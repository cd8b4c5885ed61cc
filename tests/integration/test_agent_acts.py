"""The agent acts on its call, against the real bridge and the reference agent: the call's context
comes first on ``events`` (with the INVITE's forwarded headers, or the metadata and headers of
``POST /calls``), the agent hangs up with a reason, and the API sends the agent events and the
phone digits."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import audio, pjsua_phone, sipp
from testbed.bridge_proc import AgentProcess, BridgeProcess, start_bridge
from testbed.procs import free_port_block, in_background, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.sipp]

KEY = "test-key-acts-0123456789abcdef"


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {"uas": free_port_block(1)}


@pytest.fixture(scope="module")
def bridge(
    logdir: Path, agent: AgentProcess, ports: dict[str, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BridgeProcess]:
    config = tmp_path_factory.mktemp("config") / "sipbridge.toml"
    config.write_text(
        f'[api]\nkeys = ["{KEY}"]\n\n[providers.trunk]\ntype = "generic"\n'
        f'address = "127.0.0.1:{ports["uas"]}"\ndestinations = ["^1[0-9]{{3}}$"]\n'
    )
    bridge = start_bridge(logdir, agent.whip_url, "--config", str(config))
    yield bridge
    bridge.proc.stop()


def api(bridge: BridgeProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return bridge.request(method, path, body, key=KEY)


def agent_session(agent: AgentProcess, resource_id: str) -> dict[str, Any]:
    found = wait_until(
        lambda: next((s for s in reversed(agent.sessions()) if s["resource_id"] == resource_id), None), 10
    )
    assert found, agent.sessions()
    return found


def answered_call(bridge: BridgeProcess, caller: str) -> dict[str, Any]:
    status, calls = api(bridge, "GET", "/calls")
    found = wait_until(
        lambda: next(
            (
                c
                for c in api(bridge, "GET", "/calls")[1]["calls"]
                if c["from"] == caller and c["state"] == "answered"
            ),
            None,
        ),
        10,
    )
    assert found, f"no answered call from {caller}\n{bridge.log()}"
    return found


def test_context_first_then_api_events_and_digits_then_the_agent_hangs_up(
    bridge: BridgeProcess, agent: AgentProcess, tmp_path: Path
) -> None:
    caller = "+15557100001"
    peer = in_background(
        lambda: sipp.run_scenario(
            "uac_headers_wait_for_bye",
            bridge.sip_target,
            keys={"caller": caller, "customer": "C-4711"},
            workdir=tmp_path,
            timeout=40,
            recv_timeout_ms=25000,
        )
    )
    try:
        call = answered_call(bridge, caller)
        session = agent_session(agent, caller)
        assert wait_until(lambda: agent_session(agent, caller)["events"], 5), session
        context = agent_session(agent, caller)["events"][0]
        assert context["type"] == "call" and context["id"] == call["id"], context
        assert (context["direction"], context["from"], context["metadata"]) == ("inbound", caller, {})
        assert context["headers"] == {
            "X-Customer-Id": "C-4711",
            "User-to-User": "56a390f3d2b7310023a2;encoding=hex",
        }, context  # never Authorization or X-Auth-Token
        assert call["headers"] == context["headers"]

        status, body = api(bridge, "POST", f"/calls/{call['id']}/events", {"type": "note", "text": "VIP"})
        assert status == 202, body
        assert wait_until(
            lambda: {"type": "note", "text": "VIP"} in agent_session(agent, caller)["events"], 5
        )
        assert api(bridge, "POST", f"/calls/{call['id']}/events", [1, 2])[0] == 422
        assert api(bridge, "POST", f"/calls/{call['id']}/events", {"pad": "x" * 5000})[0] == 413

        status, body = api(bridge, "POST", f"/calls/{call['id']}/dtmf", {"digits": "12#"})
        assert status == 202, body
        assert api(bridge, "POST", f"/calls/{call['id']}/dtmf", {"digits": "12\r\n"})[0] == 422
        sent = lambda: [d["digit"] for d in api(bridge, "GET", f"/calls/{call['id']}")[1]["dtmf"]]  # noqa: E731
        assert wait_until(lambda: sent() == ["1", "2", "#"], 5), sent()

        # this caller's Allow has no REFER: auto would bridge, which is not built yet
        status, body = api(bridge, "POST", f"/calls/{call['id']}/transfer", {"to": "sip:desk@127.0.0.1"})
        assert status == 501 and "bridging" in body["error"], body
        agent.send_events(session["id"], {"type": "hangup", "reason": "the caller's question is answered"})
    finally:
        peer.join(40)
    result: sipp.SippResult = peer.result()
    result.assert_success(calls=1)
    bye = next(m for m in sipp.traced(result) if not m.sent and m.method == "BYE" and m.is_request)
    assert bye.header("Reason") == 'SIP;cause=200;text="agent hung up: the caller\'s question is answered"'
    ended = api(bridge, "GET", f"/calls/{call['id']}")[1]
    assert ended["end_reason"] == "agent hung up: the caller's question is answered", ended
    assert api(bridge, "POST", f"/calls/{call['id']}/dtmf", {"digits": "1"})[0] == 409


def test_an_outbound_call_carries_its_headers_and_the_agent_learns_its_metadata(
    bridge: BridgeProcess, agent: AgentProcess, ports: dict[str, int], tmp_path: Path
) -> None:
    headers = {"X-Campaign": "spring-7", "User-to-User": "31323334;encoding=hex"}
    with sipp.sipp_uas(
        "uas_answer_then_bye", port=ports["uas"], hold_ms=4000, calls=1, workdir=tmp_path
    ) as far:
        status, call = api(
            bridge,
            "POST",
            "/calls",
            {"provider": "trunk", "to": "1042", "metadata": {"lead": "77"}, "headers": headers},
        )
        assert status == 201, call
        assert call["headers"] == headers
        session = agent_session(agent, "1042")
        assert wait_until(lambda: agent_session(agent, "1042")["events"], 10), session
        context = agent_session(agent, "1042")["events"][0]
        assert context["type"] == "call" and context["direction"] == "outbound", context
        assert context["metadata"] == {"lead": "77"} and context["headers"] == headers, context
        result = far.result()
    result.assert_success(calls=1)
    invite = next(m for m in sipp.traced(result) if not m.sent and m.method == "INVITE" and m.is_request)
    assert (
        invite.header("X-Campaign") == "spring-7" and invite.header("User-to-User") == headers["User-to-User"]
    )
    for bad in ({"Authorization": "x"}, {"X-Bad": "a\r\nVia: evil"}, {"X-Auth-Token": "t"}, {"Route": "x"}):
        status, body = api(bridge, "POST", "/calls", {"provider": "trunk", "to": "1042", "headers": bad})
        assert status == 422, (bad, body)


def told(agent: AgentProcess, caller: str) -> list[str]:
    """The transfer states the agent was told, in order."""
    return [e["state"] for e in agent_session(agent, caller)["events"] if e.get("type") == "transfer"]


def transferee(bridge: BridgeProcess, caller: str, final: str, workdir: Path):  # noqa: ANN201
    return in_background(
        lambda: sipp.run_scenario(
            "uac_transferee",
            bridge.sip_target,
            keys={"caller": caller, "final": final},
            workdir=workdir,
            timeout=40,
            recv_timeout_ms=25000,
        )
    )


def test_the_agent_transfers_by_refer_and_the_bridge_leaves_once_the_target_answered(
    bridge: BridgeProcess, agent: AgentProcess, tmp_path: Path
) -> None:
    caller = "+15557100003"
    peer = transferee(bridge, caller, "200 OK", tmp_path)
    try:
        call = answered_call(bridge, caller)
        session = agent_session(agent, caller)
        status, body = api(bridge, "POST", f"/calls/{call['id']}/transfer", {"to": "+14155550100"})
        assert status == 403 and "transfer" in body["error"], body  # not in the trunk's destinations
        status, body = api(bridge, "POST", f"/calls/{call['id']}/transfer", {"to": "sip:desk@192.0.2.9"})
        assert status == 403 and "peer host" in body["error"], body  # another host: refused
        agent.send_events(session["id"], {"type": "transfer", "to": "sip:desk@127.0.0.1", "mode": "refer"})
    finally:
        peer.join(40)
    result: sipp.SippResult = peer.result()
    result.assert_success(calls=1)
    refer = next(m for m in sipp.traced(result) if not m.sent and m.method == "REFER" and m.is_request)
    assert refer.header("Refer-To") == "<sip:desk@127.0.0.1>" and refer.header("Referred-By"), refer.text
    ended = api(bridge, "GET", f"/calls/{call['id']}")[1]
    assert ended["end_reason"] == "transferred to sip:desk@127.0.0.1", ended
    assert [s["state"] for s in ended["transfer"]["states"]] == ["trying", "answered"], ended["transfer"]
    assert wait_until(lambda: agent_session(agent, caller)["deleted"], 5)  # the agent's part is over
    assert told(agent, caller)[:1] == ["trying"], told(agent, caller)


def test_a_transfer_the_target_refuses_leaves_the_call_with_the_agent(
    bridge: BridgeProcess, agent: AgentProcess, tmp_path: Path
) -> None:
    caller = "+15557100004"
    peer = transferee(bridge, caller, "486 Busy Here", tmp_path)
    try:
        call = answered_call(bridge, caller)
        session = agent_session(agent, caller)
        status, body = api(bridge, "POST", f"/calls/{call['id']}/transfer", {"to": "sip:desk@127.0.0.1"})
        assert status == 202 and body["transfer"]["state"] == "trying", body
        view = lambda: api(bridge, "GET", f"/calls/{call['id']}")[1]  # noqa: E731
        assert wait_until(lambda: view()["transfer"]["state"] == "failed", 10), view()
        assert view()["state"] == "answered" and "486" in view()["transfer"]["reason"]
        assert wait_until(lambda: told(agent, caller)[-1:] == ["failed"], 5), told(agent, caller)
        agent.send_events(session["id"], {"type": "hangup", "reason": "transfer failed"})
    finally:
        peer.join(40)
    peer.result().assert_success(calls=1)


@pytest.mark.skipif(not pjsua_phone.available(), reason="pjsua2-python is not installed")
def test_a_pjsip_caller_transferred_by_refer_hears_itself_from_the_target(
    bridge: BridgeProcess, agent: AgentProcess, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """PJSIP takes the REFER as the transferee (202, calls the target, NOTIFYs); the target, a sipp
    UAS, echoes: the caller's speech comes back first through the agent, then from the target."""
    text = " ".join(["One two three four five six seven eight nine ten."] * 3)
    speech = audio.make_speech(text, tmp_path_factory.mktemp("speech") / "long.wav")
    target_port = free_port_block(1)
    with sipp.sipp_uas(port=target_port, calls=1, workdir=tmp_path / "target") as target:
        phone = in_background(
            lambda: pjsua_phone.run_call(f"sip:desk@{bridge.sip_target}", speech, tmp_path / "pj", seconds=10)
        )
        try:
            call = wait_until(
                lambda: next(
                    (c for c in api(bridge, "GET", "/calls")[1]["calls"] if c["state"] == "answered"), None
                ),
                15,
            )
            assert call, bridge.log()
            time.sleep(3)  # the agent hears some of it first
            session = next(
                s for s in reversed(agent.sessions()) if s["events"] and s["events"][0]["id"] == call["id"]
            )
            agent.send_events(session["id"], {"type": "transfer", "to": f"sip:desk@127.0.0.1:{target_port}"})
        finally:
            phone.join(60)
        pj = phone.result()
        target.result().assert_success(calls=1)
    assert pj.report.get("transferred_to") == f"<sip:desk@127.0.0.1:{target_port}>", pj.report
    ended = api(bridge, "GET", f"/calls/{call['id']}")[1]
    assert ended["end_reason"] == f"transferred to sip:desk@127.0.0.1:{target_port}", ended
    assert wait_until(lambda: next(s for s in agent.sessions() if s["id"] == session["id"])["deleted"], 5)
    match = audio.compare_files_windowed(speech, pj.recorded)
    print(f"PJSIP through the agent, then transferred to an echoing target: {match}")
    assert match.median >= 0.85, match
