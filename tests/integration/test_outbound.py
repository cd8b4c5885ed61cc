"""Outbound calls through the REST API to sipp acting as a provider, and the API's guard rails."""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import kamailio, sipp, tls_certs
from testbed.bridge_proc import AgentProcess, BridgeProcess, start_bridge
from testbed.procs import LOOPBACK, free_port_block, wait_until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sipp,
]

KEY = "test-key-0123456789abcdef"


def api(
    bridge: BridgeProcess, method: str, path: str, body: Any = None, key: str | None = KEY
) -> tuple[int, Any]:
    return bridge.request(method, path, body, key=key)


@pytest.fixture(scope="module")
def far_port() -> int:
    return free_port_block(1)


@pytest.fixture(scope="module")
def bridge(
    logdir: Path, agent: AgentProcess, far_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BridgeProcess]:
    config = tmp_path_factory.mktemp("config") / "sipbridge.toml"
    config.write_text(
        f"""
[api]
keys = ["{KEY}"]

[providers.pbx]
type = "generic"
address = "127.0.0.1:{far_port}"
destinations = ['^1[0-9]{{3}}$', '^\\+1[2-9][0-9]{{9}}$', '^\\+44[0-9]{{10}}$']
max_outbound_calls = 2
max_attempts_per_minute = 30
ring_timeout = 20
caller_id = "bridge"
username = "sipbridge"
password = "secret-password-1"

[providers.nowhere]
type = "generic"
address = "127.0.0.1:{free_port_block(1)}"
destinations = ['^1[0-9]{{3}}$']

[providers.capped]
type = "generic"
address = "127.0.0.1:{free_port_block(1)}"
destinations = ['^1[0-9]{{3}}$']
max_attempts_per_minute = 1
"""
    )
    bridge = start_bridge(logdir, agent.whip_url, "--config", str(config))
    yield bridge
    bridge.proc.stop()


def test_every_route_but_health_needs_a_key(bridge: BridgeProcess) -> None:
    assert api(bridge, "GET", "/health", key=None)[0] == 200
    for method, path in [
        ("GET", "/calls"),
        ("GET", "/providers"),
        ("GET", "/calls/x"),
        ("DELETE", "/calls/x"),
    ]:
        status, body = api(bridge, method, path, key=None)
        assert status == 401 and "Bearer" in body["error"], (method, path, body)
        assert api(bridge, method, path, key="wrong-key-0123456789")[0] == 401
    assert api(bridge, "POST", "/calls", {"provider": "pbx", "to": "1001"}, key=None)[0] == 401


def test_providers_are_listed_without_secrets(bridge: BridgeProcess) -> None:
    status, body = api(bridge, "GET", "/providers")
    assert status == 200
    pbx = next(p for p in body["providers"] if p["name"] == "pbx")
    assert pbx["name"] == "pbx" and pbx["type"] == "generic" and pbx["status"] == "ready"
    assert "secret-password-1" not in json.dumps(body) and "password" not in pbx
    assert "secret-password-1" not in bridge.log()


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"provider": "nope", "to": "1001"}, 404, "no provider named 'nope'"),
        ({"provider": "pbx", "to": "call me"}, 422, "phone number"),
        ({"provider": "pbx", "to": "5551234"}, 403, "not in this provider's allowed destinations"),
        ({"provider": "pbx", "to": "+19005551234"}, 403, "premium"),
        ({"provider": "pbx", "to": "+441234567890"}, 403, "international"),
        ({"provider": "pbx"}, 422, "invalid request"),
        ({"provider": "pbx", "to": "1001", "ring_timeout": -1}, 422, "invalid request"),
        ({"provider": "pbx", "to": "1001", "colour": "red"}, 422, "invalid request"),
        ({"provider": "pbx", "to": "1001", "from": "a b"}, 422, "invalid request"),
    ],
)
def test_bad_requests_get_a_clear_4xx(bridge: BridgeProcess, body: dict, status: int, says: str) -> None:
    got, answer = api(bridge, "POST", "/calls", body)
    assert got == status and says in answer["error"], answer


def test_unknown_call_is_404(bridge: BridgeProcess) -> None:
    assert api(bridge, "GET", "/calls/nope")[0] == 404
    assert api(bridge, "DELETE", "/calls/nope")[0] == 404


def test_outbound_call_talks_and_ends_through_the_api(
    bridge: BridgeProcess, agent: AgentProcess, far_port: int, tmp_path: Path
) -> None:
    with sipp.sipp_uas("uas", port=far_port, rtp_echo=True, calls=1, workdir=tmp_path) as far:
        status, call = api(
            bridge, "POST", "/calls", {"provider": "pbx", "to": "1001", "metadata": {"crm": "42"}}
        )
        assert status == 201 and call["state"] in ("dialing", "ringing"), call
        assert call["direction"] == "outbound" and call["to"] == "1001" and call["metadata"] == {"crm": "42"}
        view = lambda: api(bridge, "GET", f"/calls/{call['id']}")[1]  # noqa: E731
        assert wait_until(lambda: view()["state"] == "answered", 10), view()
        assert wait_until(lambda: view()["agent"]["packets_received"] > 20, 10), view()
        assert wait_until(lambda: view()["rtp"]["packets_in"] > 20, 5), view()
        assert view()["rtp"]["packets_out"] > 20  # the far end hears the agent
        status, ended = api(bridge, "DELETE", f"/calls/{call['id']}")
        assert status == 200
        assert wait_until(lambda: view()["state"] == "ended", 5), view()
        again = api(bridge, "DELETE", f"/calls/{call['id']}")
        assert again[0] == 200 and again[1]["state"] == "ended"  # idempotent
        far.result().assert_success(calls=1)
    final = view()
    assert [s["state"] for s in final["states"]] == ["dialing", "ringing", "answered", "ended"], final
    assert final["end_reason"] == "hung up through the API"
    assert final["provider"] == "pbx" and final["codec"] == "PCMU"
    session = next(s for s in agent.sessions() if s["resource_id"] == "1001")
    assert session["direction"] == "outbound"  # WHIP ?direction=outbound


def _place(bridge: BridgeProcess, **body: Any) -> dict:
    status, call = api(bridge, "POST", "/calls", {"provider": "pbx", "to": "1001"} | body)
    assert status == 201, call
    return call


def _ended(bridge: BridgeProcess, call_id: str, timeout: float = 15) -> dict:
    view = lambda: api(bridge, "GET", f"/calls/{call_id}")[1]  # noqa: E731
    assert wait_until(lambda: view()["state"] == "ended", timeout), view()
    return view()


def test_digest_challenge_is_answered_and_the_far_end_hangs_up(
    bridge: BridgeProcess, far_port: int, tmp_path: Path
) -> None:
    keys = {"user": "sipbridge", "password": "secret-password-1", "realm": "pbx.test", "algo": "MD5"}
    keys["hangup_ms"] = "1500"
    with sipp.sipp_uas("uas_digest_answer", port=far_port, keys=keys, calls=1, workdir=tmp_path) as far:
        call = _place(bridge)
        ended = _ended(bridge, call["id"])
        far.result().assert_success(calls=1)
    assert ended["end_reason"] == "far end hung up" and ended["answered_at"], ended
    assert [s["state"] for s in ended["states"]] == ["dialing", "ringing", "answered", "ended"]


def test_busy_far_end(bridge: BridgeProcess, far_port: int, tmp_path: Path) -> None:
    keys = {"status": "486", "reason": "Busy Here"}
    with sipp.sipp_uas("uas_reject", port=far_port, keys=keys, calls=1, rtp_echo=False, workdir=tmp_path):
        ended = _ended(bridge, _place(bridge)["id"])
    assert ended["end_reason"] == "busy" and ended["answered_at"] is None, ended


def test_no_answer_until_the_ring_timeout_is_cancelled(
    bridge: BridgeProcess, far_port: int, tmp_path: Path
) -> None:
    with sipp.sipp_uas(
        "uas_ring_until_cancel", port=far_port, calls=1, rtp_echo=False, workdir=tmp_path
    ) as far:
        ended = _ended(bridge, _place(bridge, ring_timeout=1)["id"])
        far.result().assert_success(calls=1)
    assert ended["end_reason"] == "no answer", ended
    assert [s["state"] for s in ended["states"]] == ["dialing", "ringing", "ended"]


def test_hanging_up_while_it_rings_cancels(bridge: BridgeProcess, far_port: int, tmp_path: Path) -> None:
    with sipp.sipp_uas(
        "uas_ring_until_cancel", port=far_port, calls=1, rtp_echo=False, workdir=tmp_path
    ) as far:
        call = _place(bridge)
        view = lambda: api(bridge, "GET", f"/calls/{call['id']}")[1]  # noqa: E731
        assert wait_until(lambda: view()["state"] == "ringing", 5), view()
        status, _ = api(bridge, "DELETE", f"/calls/{call['id']}")
        assert status == 200
        far.result().assert_success(calls=1)  # it saw the CANCEL and answered 487
    ended = _ended(bridge, call["id"])
    assert ended["end_reason"] == "hung up through the API", ended


def test_a_media_worker_that_dies_while_it_rings_cancels_with_the_reason(
    bridge: BridgeProcess, far_port: int, tmp_path: Path
) -> None:
    """Issue 15: an outbound call still ringing when its media worker dies is CANCELled, with a
    Reason naming the failure (Q.850 normal clearing: SIP cause 200 would mean answered elsewhere)."""
    with sipp.sipp_uas(
        "uas_ring_until_cancel", port=far_port, calls=1, rtp_echo=False, workdir=tmp_path
    ) as far:
        call = _place(bridge)
        view = lambda: api(bridge, "GET", f"/calls/{call['id']}")[1]  # noqa: E731
        assert wait_until(lambda: view()["state"] == "ringing", 5), view()
        workers = api(bridge, "GET", "/health")[1]["workers"]
        victim = next(w for w in workers if w["index"] == view()["worker"])
        os.kill(victim["pid"], signal.SIGKILL)
        result = far.result()
        result.assert_success(calls=1)  # it saw the CANCEL and answered 487
    cancel = next(m for m in sipp.traced(result) if m.is_request and m.method == "CANCEL")
    assert cancel.header("Reason") == 'Q.850;cause=16;text="media worker failed"', cancel.first_line
    assert _ended(bridge, call["id"])["end_reason"] == "media worker failed"
    back = lambda: api(bridge, "GET", "/health")[1]["workers"]  # noqa: E731
    assert wait_until(lambda: any(w["pid"] != victim["pid"] and w["state"] == "up" for w in back()), 20)


def test_unreachable_provider(bridge: BridgeProcess) -> None:
    """Nobody at the provider's address: the INVITE times out (64·T1 here is 32 s: too long for a test);
    the call is listed as dialing and a DELETE ends it at once."""
    call = _place(bridge, provider="nowhere")
    status, ended = api(bridge, "DELETE", f"/calls/{call['id']}")
    assert status == 200 and ended["state"] == "ended" and ended["end_reason"] == "hung up through the API"


def _early_media_call(
    bridge: BridgeProcess, far_port: int, speech: Path, tmp_path: Path, scenario: str
) -> sipp.SippResult:
    """A call to a sipp trunk playing an announcement in a 183 before answering: early media reaches
    the agent while it rings, then the far end answers and hangs up. Returns sipp's result."""
    from testbed import audio

    ulaw = audio.wav_to_ulaw_raw(speech, tmp_path / "announcement.ul")
    keys = {"audio_file": str(ulaw), "ring_ms": "2500", "hangup_ms": "800"}
    with sipp.sipp_uas(scenario, port=far_port, keys=keys, calls=1, rtp_echo=False, workdir=tmp_path) as far:
        call = _place(bridge)
        view = lambda: api(bridge, "GET", f"/calls/{call['id']}")[1]  # noqa: E731
        early = wait_until(
            lambda: (
                (v := view())["state"] == "ringing" and (v["agent"] or {}).get("packets_sent", 0) > 10 and v
            ),
            5,
        )
        assert early, view()
        assert early["rtp"]["packets_in"] > 10 and early["answered_at"] is None, early
        ended = _ended(bridge, call["id"])
        result = far.result()
        result.assert_success(calls=1)
    assert ended["end_reason"] == "far end hung up", ended
    assert [s["state"] for s in ended["states"]] == ["dialing", "ringing", "answered", "ended"]
    return result


def test_early_media_reaches_the_agent_before_the_answer(
    bridge: BridgeProcess, far_port: int, speech: Path, tmp_path: Path
) -> None:
    """A 183 with SDP: the far end's announcement flows to the agent while the call still rings."""
    _early_media_call(bridge, far_port, speech, tmp_path, "uas_early_media")


def test_reliable_183_from_the_trunk_is_pracked_and_its_early_media_flows(
    bridge: BridgeProcess, far_port: int, speech: Path, tmp_path: Path
) -> None:
    """RFC 3262 as UAC: a 183 with Require: 100rel gets one PRACK; its SDP still starts early media."""
    result = _early_media_call(bridge, far_port, speech, tmp_path, "uas_early_media_100rel")
    messages = sipp.traced(result)
    pracks = {m.header("Via"): m for m in messages if not m.sent and m.method == "PRACK"}
    assert len(pracks) == 1, [m.text for m in pracks.values()]
    (prack,) = pracks.values()
    assert prack.header("RAck") == "4711 1 INVITE" and prack.header("CSeq") == "2 PRACK", prack.text


def test_proxy_challenge_407_is_answered(bridge: BridgeProcess, far_port: int, tmp_path: Path) -> None:
    keys = {"user": "sipbridge", "password": "secret-password-1", "realm": "proxy.test", "algo": "MD5"}
    keys["hangup_ms"] = "500"
    with sipp.sipp_uas("uas_proxy_auth", port=far_port, keys=keys, calls=1, workdir=tmp_path) as far:
        ended = _ended(bridge, _place(bridge)["id"])
        far.result().assert_success(calls=1)
    assert ended["end_reason"] == "far end hung up" and ended["answered_at"], ended


@pytest.mark.skipif(not kamailio.available(tls=True), reason="kamailio with TLS modules is not installed")
@pytest.mark.parametrize("trusted", [True, False])
def test_outbound_over_tls_verifies_the_trunk_certificate(
    logdir: Path, agent: AgentProcess, trusted: bool, tmp_path: Path
) -> None:
    """bridge -(TLS, cert checked for the trunk's host name)-> kamailio -> sipp: as to sip.twilio's 5061."""
    certs = tls_certs.make_certs(tmp_path / "tls")
    ca = certs.ca_cert if trusted else tls_certs.make_certs(tmp_path / "other").ca_cert
    far_port = free_port_block(1)
    with (
        sipp.sipp_uas(
            "uas_answer_record_route", port=far_port, rtp_echo=True, calls=1, workdir=tmp_path / "far"
        ) as far,
        kamailio.proxy(
            (LOOPBACK, far_port),
            transport="udp",
            tls=(certs.cert, certs.key),
            ca_file=certs.ca_cert,
            workdir=tmp_path / "kam",
        ) as kam,
    ):
        config = tmp_path / "sipbridge.toml"
        config.write_text(
            f'tls_ca_file = "{ca}"\n[api]\nkeys = ["{KEY}"]\n'
            f'[providers.pbx]\ntype = "generic"\naddress = "localhost:{kam.tls_port}"\ntransport = "tls"\n'
        )
        bridge = start_bridge(logdir, agent.whip_url, "--config", str(config))
        try:
            call = _place(bridge)
            view = lambda: api(bridge, "GET", f"/calls/{call['id']}")[1]  # noqa: E731
            if trusted:
                assert wait_until(lambda: view()["state"] == "answered", 10), view()
                assert api(bridge, "DELETE", f"/calls/{call['id']}")[0] == 200
                far.result().assert_success(calls=1)
                assert kam.events("loose", "BYE"), kam.report()
            else:
                ended = _ended(bridge, call["id"])
                assert ended["end_reason"].startswith("unreachable"), ended
                assert not kam.events("relay", "INVITE")
        finally:
            bridge.proc.stop()


def test_registers_to_a_challenging_registrar_and_refreshes(
    logdir: Path, agent: AgentProcess, tmp_path: Path
) -> None:
    """sipp as a registrar: 401, then the REGISTER with credentials, a refresh before expiry, and the
    un-REGISTER when the bridge stops."""
    port = free_port_block(1)
    keys = {"user": "bridge", "password": "reg-password-7", "realm": "registrar.test", "expires": "10"}
    config = tmp_path / "sipbridge.toml"
    config.write_text(
        f'[providers.reg]\ntype = "generic"\naddress = "127.0.0.1:{port}"\nusername = "bridge"\n'
        'password = "reg-password-7"\nregister = true\nregister_expires = 10\n'
    )
    with sipp.sipp_uas(
        "uas_registrar", port=port, keys=keys, calls=1, rtp_echo=False, workdir=tmp_path
    ) as reg:
        bridge = start_bridge(logdir, agent.whip_url, "--config", str(config))
        try:
            status = lambda: json.loads(  # noqa: E731
                urllib.request.urlopen(f"{bridge.api}/providers", timeout=5).read()
            )["providers"][0]
            assert wait_until(lambda: status()["status"] == "registered", 10), status()
            trace = lambda: (tmp_path / "messages.log").read_text(errors="replace")  # noqa: E731
            # the refresh and the registrar's 200 to it (sipp's trace holds both): a stop before that
            # 200 is sent would make the un-REGISTER arrive while sipp is still sending, which sipp
            # counts as a failed call
            refreshed = lambda: trace().count("CSeq: 3 REGISTER") >= 2  # noqa: E731
            assert wait_until(refreshed, 9), trace()[-2000:]
        finally:
            bridge.proc.stop()
        reg.result(timeout=10).assert_success(calls=1)


@pytest.mark.skipif(not kamailio.available(), reason="kamailio is not installed")
def test_sha256_proxy_challenge_from_kamailio(logdir: Path, agent: AgentProcess, tmp_path: Path) -> None:
    """kamailio challenges the INVITE with a SHA-256 407 (RFC 8760); the answer gets the call through."""
    far_port = free_port_block(1)
    with (
        sipp.sipp_uas(
            "uas_answer_record_route", port=far_port, rtp_echo=True, calls=1, workdir=tmp_path / "far"
        ),
        kamailio.registrar(
            "bridge",
            "sha-secret-99",
            "trunk.test",
            algorithm="SHA-256",
            target=(LOOPBACK, far_port),
            workdir=tmp_path / "kam",
        ) as kam,
    ):
        config = tmp_path / "sipbridge.toml"
        config.write_text(
            f'[api]\nkeys = ["{KEY}"]\n[providers.pbx]\ntype = "generic"\naddress = "127.0.0.1:{kam.port}"\n'
            'username = "bridge"\npassword = "sha-secret-99"\ncaller_id = "bridge"\n'
            "destinations = ['^1[0-9]{3}$']\n"
        )
        bridge = start_bridge(logdir, agent.whip_url, "--config", str(config))
        try:
            call = _place(bridge)
            view = lambda: api(bridge, "GET", f"/calls/{call['id']}")[1]  # noqa: E731
            assert wait_until(lambda: view()["state"] == "answered", 10), (view(), kam.log()[-3000:])
            assert api(bridge, "DELETE", f"/calls/{call['id']}")[0] == 200
        finally:
            bridge.proc.stop()
    assert kam.events("challenge") and kam.events("auth-ok"), kam.log()[-3000:]


def test_attempts_over_the_cap_get_429_with_retry_after(bridge: BridgeProcess) -> None:
    first = _place(bridge, provider="capped")
    data = json.dumps({"provider": "capped", "to": "1002"}).encode()
    request = urllib.request.Request(f"{bridge.api}/calls", data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {KEY}")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 429 and int(info.value.headers["Retry-After"]) >= 1
    assert "in a minute" in json.loads(info.value.read())["error"]
    api(bridge, "DELETE", f"/calls/{first['id']}")


def test_openapi_and_docs_need_the_key_too(bridge: BridgeProcess) -> None:
    for path in ("/openapi.json", "/docs"):
        request = urllib.request.Request(f"{bridge.api}{path}")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        assert info.value.code == 401
    status, schema = api(bridge, "GET", "/openapi.json")
    assert status == 200 and "/calls" in schema["paths"] and "/providers" in schema["paths"]
