"""The whole attack set of issue 13 against a running bridge, for a while, as one process:

    python -m testbed.attacks 127.0.0.1:5060 --api http://127.0.0.1:8090 --rtp 10000-10099 \\
        --tls-port 5061 --pbx-password SECRET --seconds 10 --out attacks.json

All at once, for ``--seconds``: RTP sprayed in sequence over the whole RTP range, an ACK flood,
1,500 silent TLS connections, and a cycle of the rest (an SDP naming a host, text made to make a
regex backtrack, responses aimed at a third party, a PBX's digest answer replayed, a blind ACK for a
spoofed INVITE, a BYE and a re-INVITE from a third address inside a call, a stranger's 10 MB body
and a rebinding Host to the API, numbers abroad dialled through a US trunk); and OPTIONS from
another host all along, timed. The bridge must have the providers ``bench/load/attacks.py`` configures:
"edge" (a trunk at 127.0.0.2), "pbx" (digest user ``asterisk``) and "tw" (Twilio). What each attack
got is written as JSON, with ``held``: whether each defence held. Loopback targets only.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sipbridge.sip.digest import DigestCredentials, authorization_value, parse_challenge
from testbed import attacker
from testbed.attacker import Dialog, OptionsProbe, RtpPhone, RtpSprayer
from testbed.flood import write_result
from testbed.rawsip import RawSipSocket

EDGE, SPRAYER, PROBE, PBX, STRANGER, ACKER, TLS_HOST, THIRD_PARTY = (
    "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8", "127.0.0.9"
)  # fmt: skip
FRAUD = ("00441234567890", "011441234567890", "0019005551234", "00882123456", "+18765551234")
TLS_CONNECTIONS = 1500
TLS_PER_SOURCE_CAP = 32  # sip_max_connections_per_source, the default
ACKS_PER_SECOND = 2000
BLIND_EVERY_S = 5.0


class Attacks:
    def __init__(self, target: tuple[str, int], api: str, rtp: tuple[int, int], tls_port: int, password: str):
        self.target, self.api, self.rtp, self.tls_port, self.password = target, api, rtp, tls_port, password
        self.stop = threading.Event()
        self.counts: Counter[str] = Counter()
        self.statuses: dict[str, Counter[int]] = {}
        self.victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.victim.bind((THIRD_PARTY, 0))
        self.victim.setblocking(False)
        self.errors: list[str] = []
        self.bridge_pid: int | None = None

    def guarded(self, job: Callable[[], None]) -> Callable[[], None]:
        """``job`` with its exception recorded (a failed attack must show, not pass as held)."""

        def run() -> None:
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - reported in the results
                self.errors.append(f"{job.__name__}: {type(exc).__name__}: {exc}")

        return run

    # -- the ones that run all along -----------------------------------------------------------

    def ack_flood(self) -> None:
        with RawSipSocket(ACKER) as sock:
            ack = Dialog(self.target, to_tag="x").request("ACK", sock.address)
            while not self.stop.is_set():
                for _ in range(ACKS_PER_SECOND // 100):
                    sock.send(ack, self.target)
                self.counts["acks_sent"] += ACKS_PER_SECOND // 100
                time.sleep(0.01)

    def tls_flood(self) -> None:
        """Connections to the TLS port that never say a word; at the end, how many are still open."""
        socks = []
        for _ in range(TLS_CONNECTIONS):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((TLS_HOST, 0))
            sock.setblocking(False)
            sock.connect_ex((self.target[0], self.tls_port))
            socks.append(sock)
        self.counts["tls_opened"] = len(socks)
        self.stop.wait(3.0)  # the bridge has judged them all by now (the flood stays open)
        held = []
        for _ in range(3):
            held.append(_connections_held(self.bridge_pid, self.tls_port, TLS_HOST))
            time.sleep(0.2)
        self.counts["tls_held_by_bridge"] = min(held)  # refused ones on their way out are not held
        self.stop.wait()
        for sock in socks:
            sock.close()

    # -- the cycle -----------------------------------------------------------------------------

    def cycle(self) -> None:
        with RawSipSocket(EDGE) as edge, RawSipSocket(STRANGER) as stranger, RawSipSocket(PBX) as pbx:
            dialog, phone = self._call(edge)
            next_blind = 0.0
            while not self.stop.is_set():
                for attack in (self.host_name, self.backtracking, self.maddr):
                    attack(edge, stranger)
                self.replay(pbx, stranger)
                self.third_party_in_dialog(stranger, dialog)
                if time.monotonic() >= next_blind:
                    self.blind_ack()
                    next_blind = time.monotonic() + BLIND_EVERY_S
                self.rest()
                self.stop.wait(0.5)
            self._count("edge", edge)
            self._count("stranger", stranger)
            self._count("pbx", pbx)
            self.counts["call_still_up"] = int(phone.received > 0 and self._call_alive(dialog))
            phone.stop()
            edge.send(dialog.request("BYE", edge.address, branch=dialog.next_branch(), cseq=99), self.target)

    def _call(self, edge: RawSipSocket) -> tuple[Dialog, RtpPhone]:
        """The call the in-dialog attacks aim at: from the edge trunk, with RTP both ways."""
        phone = RtpPhone(EDGE)
        dialog = Dialog(self.target)
        answer = attacker.place_call(edge, dialog, phone.address)
        phone.start((self.target[0], attacker.answer_port(answer)))
        return dialog, phone

    def _call_alive(self, dialog: Dialog) -> bool:
        calls = self._api("GET", "/calls")[1] or {"calls": []}
        return any(c["sip_call_id"] == dialog.call_id and c["state"] == "answered" for c in calls["calls"])

    def host_name(self, edge: RawSipSocket, _: RawSipSocket) -> None:
        body = attacker.sdp("slow.test", 4000)
        edge.send(Dialog(self.target).request("INVITE", edge.address, body=body), self.target)
        self.counts["host_name_invites"] += 1

    def backtracking(self, edge: RawSipSocket, stranger: RawSipSocket) -> None:
        filler = "sip:" * 14_000
        auth = (
            f'Authorization: Digest username="{filler}", realm="sipbridge", nonce="x", uri="sip:x", '
            'response="0", qop=auth, nc=00000001, cnonce="c"'
        )
        body = attacker.sdp(STRANGER, 4000)
        stranger.send(
            Dialog(self.target).request("INVITE", stranger.address, body=body, extra=(auth,)), self.target
        )
        codecs = attacker.sdp(EDGE, 4000, codecs="96", rtpmap=f"a=rtpmap:96 {filler[:56_000]}/8000\r\n")
        edge.send(Dialog(self.target).request("INVITE", edge.address, body=codecs), self.target)
        self.counts["backtracking_datagrams"] += 2

    def maddr(self, edge: RawSipSocket, _: RawSipSocket) -> None:
        params = f";maddr={THIRD_PARTY};rport"
        edge.send(Dialog(self.target).request("OPTIONS", edge.address, via_params=params), self.target)
        g729 = attacker.sdp(EDGE, 4000, codecs="18", rtpmap="a=rtpmap:18 G729/8000\r\n")
        edge.send(
            Dialog(self.target).request("INVITE", edge.address, via_params=params, body=g729), self.target
        )
        self.counts["maddr_requests"] += 2

    def replay(self, pbx: RawSipSocket, stranger: RawSipSocket) -> None:
        """The PBX answers a challenge (and cancels the call it made); the answer is replayed."""
        dialog = Dialog(self.target)
        before = len(pbx.replies)
        pbx.send(dialog.request("INVITE", pbx.address, body=attacker.sdp(PBX, 4000)), self.target)
        challenge = attacker.final(pbx, 2, before)
        if challenge is None or challenge.status != 401:
            self.counts["replay_no_challenge"] += 1
            return
        uri = f"sip:{dialog.user}@{self.target[0]}:{self.target[1]}"
        header = "Authorization: " + authorization_value(
            parse_challenge(challenge.headers["www-authenticate"]),
            DigestCredentials("asterisk", self.password),
            "INVITE",
            uri,
            cnonce="c0ffee",
            nc=1,
        )
        branch = dialog.next_branch()
        body = attacker.sdp(PBX, 4000)
        pbx.send(
            dialog.request("INVITE", pbx.address, cseq=2, branch=branch, body=body, extra=(header,)),
            self.target,
        )
        time.sleep(0.05)
        pbx.send(dialog.request("CANCEL", pbx.address, cseq=2, branch=branch), self.target)
        for sock in (stranger, pbx):
            replayed = Dialog(self.target).request("INVITE", sock.address, body=body, extra=(header,))
            before = len(sock.replies)
            sock.send(replayed, self.target)
            answer = attacker.final(sock, 2, before)
            admitted = any(r.status == 100 for r in sock.replies[before:])
            self.counts["replays_admitted" if admitted else "replays_refused"] += 1
            if answer is not None and answer.status == 200:
                self.counts["replays_admitted"] += 1

    def blind_ack(self) -> None:
        spoofer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never reads: it cannot see replies
        spoofer.bind((EDGE, 0))
        source = spoofer.getsockname()
        dialog = Dialog(self.target)
        victim_port = self.victim.getsockname()[1]
        spoofer.sendto(
            dialog.request("INVITE", source, body=attacker.sdp(THIRD_PARTY, victim_port)), self.target
        )
        self.stop.wait(1.0)
        spoofer.sendto(dialog.request("ACK", source), self.target)
        spoofer.sendto(
            dialog.request("ACK", source, branch=dialog.next_branch(), to_tag="guess"), self.target
        )
        spoofer.close()
        self.counts["blind_acks"] += 1

    def third_party_in_dialog(self, stranger: RawSipSocket, dialog: Dialog) -> None:
        bye = dialog.request("BYE", stranger.address, branch=dialog.next_branch(), cseq=dialog.cseq + 1)
        moved = attacker.sdp(STRANGER, 4000)
        reinvite = dialog.request(
            "INVITE", stranger.address, branch=dialog.next_branch(), cseq=dialog.cseq + 2, body=moved
        )
        stranger.send(bye, self.target)
        stranger.send(reinvite, self.target)
        self.counts["in_dialog_from_third_party"] += 2

    def rest(self) -> None:
        status, _ = self._api(
            "POST", "/calls", data=b"x" * (10 * 1024 * 1024 if not self.counts["big_bodies"] else 100_000)
        )
        self.statuses.setdefault("api_big_body", Counter())[status] += 1
        self.counts["big_bodies"] += 1
        status, _ = self._api("GET", "/calls", host="evil.example")
        self.statuses.setdefault("api_rebinding_host", Counter())[status] += 1
        for number in FRAUD:
            status, _ = self._api("POST", "/calls", body={"provider": "tw", "to": number})
            self.statuses.setdefault("api_fraud", Counter())[status] += 1

    # -- plumbing ------------------------------------------------------------------------------

    def _api(
        self, method: str, path: str, body: Any = None, *, data: bytes | None = None, host: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", **({"Host": host} if host else {})}
        payload = data if data is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.api + path, method=method, data=payload, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                text = response.read()
                return response.status, json.loads(text) if text else None
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except OSError:  # the guard closes the connection on a body it will not read
            return 0, None

    def _count(self, name: str, sock: RawSipSocket) -> None:
        self.statuses[name] = Counter(sock.statuses())

    def third_party_received(self) -> int:
        count = 0
        while True:
            try:
                self.victim.recv(65535)
            except (BlockingIOError, OSError):
                return count
            count += 1


def _connections_held(pid: int | None, port: int, peer: str) -> int:
    """TCP connections the process ``pid`` holds on local ``port`` from ``peer`` (its open sockets,
    matched in /proc/net/tcp): what the bridge keeps of a connection flood. -1 without a pid."""
    if pid is None:
        return -1
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    peer_hex = socket.inet_aton(peer)[::-1].hex().upper()
    held = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        remote_ip = fields[2].split(":")[0]
        if local_port == port and remote_ip == peer_hex and fields[9] in inodes:
            held += 1
    return held


PARTS = ("spray", "acks", "tls", "cycle")


def run(attacks: Attacks, seconds: float, parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    sprayer = RtpSprayer(SPRAYER, attacks.target[0], *attacks.rtp) if "spray" in parts else None
    jobs = {"acks": attacks.ack_flood, "tls": attacks.tls_flood, "cycle": attacks.cycle}
    threads = [threading.Thread(target=attacks.guarded(jobs[p]), daemon=True) for p in parts if p in jobs]
    with OptionsProbe(attacks.target, PROBE, interval=0.1) as probe:
        if sprayer is not None:
            sprayer.start()
        for thread in threads:
            thread.start()
        attacks.stop.wait(seconds)
        attacks.stop.set()
        for thread in threads:
            thread.join(30)
        if sprayer is not None:
            sprayer.stop()
    trips = sorted(probe.round_trips())
    counts, statuses = attacks.counts, attacks.statuses
    third_party = attacks.third_party_received()
    result = {
        "seconds": seconds,
        "parts": list(parts),
        "errors": attacks.errors,
        "counts": dict(counts),
        "statuses": {name: {str(k): v for k, v in sorted(c.items())} for name, c in statuses.items()},
        "rtp_spray": {"sent": sprayer.sent, "received": sprayer.received} if sprayer else None,
        "third_party_received": third_party,
        "options": {
            "sent": probe.sent,
            "answered": len(trips),
            "rtt_ms_max": round(trips[-1] * 1000, 1) if trips else None,
            "rtt_ms_p99": round(trips[int(0.99 * (len(trips) - 1))] * 1000, 1) if trips else None,
        },
    }
    held = {"no_attack_failed": not attacks.errors, "options_answered": len(trips) >= probe.sent - 2}
    if sprayer is not None:
        held["rtp_spray_got_nothing"] = sprayer.received == 0
    if "tls" in parts:
        held["tls_held_to_cap"] = counts["tls_held_by_bridge"] <= TLS_PER_SOURCE_CAP
    if "cycle" in parts:
        big_body = statuses.get("api_big_body", {})
        held |= {
            "third_party_got_nothing": third_party == 0,
            "no_replay_admitted": counts["replays_admitted"] == 0 and counts["replays_refused"] > 0,
            "call_survived_third_party_requests": counts["call_still_up"] == 1,
            "fraud_refused": set(statuses.get("api_fraud", {})) == {403},
            "big_body_refused": 200 not in big_body and 201 not in big_body,
            "rebinding_refused": set(statuses.get("api_rebinding_host", {})) == {400},
        }
    result["held"] = held
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.attacks", description=__doc__.split("\n")[0])
    parser.add_argument("target", help="HOST:PORT of the bridge's SIP (loopback only)")
    parser.add_argument("--api", required=True, help="the bridge's REST API URL (loopback, no keys)")
    parser.add_argument("--rtp", required=True, help="the bridge's RTP range LOW-HIGH")
    parser.add_argument("--tls-port", type=int, required=True)
    parser.add_argument("--pbx-password", required=True)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, help="write the results here as JSON (default: stdout)")
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=PARTS,
        help="leave out one part of the set (to see what each costs)",
    )
    parser.add_argument(
        "--bridge-pid", type=int, help="the bridge's process: its TLS connections are counted"
    )
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"attacks: {host} is not a loopback address")
    low, _, high = args.rtp.partition("-")
    attacks = Attacks(
        (host, int(port)), args.api.rstrip("/"), (int(low), int(high)), args.tls_port, args.pbx_password
    )
    attacks.bridge_pid = args.bridge_pid
    parts = tuple(part for part in PARTS if part not in args.without)
    write_result(run(attacks, args.seconds, parts), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
