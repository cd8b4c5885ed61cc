"""A call's media in a real media worker process, driven from here over the channel: the seam as
a process boundary. Loopback sockets only; the agent address is one nobody listens on."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import replace

import pytest

from sipbridge.config import Config
from sipbridge.media_session import messages as m
from sipbridge.media_session.remote import RemoteMedia, WorkerLost
from sipbridge.media_session.spawn import start_worker
from sipbridge.media_session.worker import WorkerSpec
from sipbridge.rtp.dtmf import parse_event
from sipbridge.rtp.packet import parse_rtp
from testbed.procs import free_tcp_port, wait_until_async


class Phone(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.packets.append(data)


def _spec(low: int) -> WorkerSpec:
    config = replace(Config(), sip_listen=replace(Config().sip_listen, host="127.0.0.1"), agent_timeout=2.0)
    agent = f"http://127.0.0.1:{free_tcp_port()}/whip"  # refused at once
    return WorkerSpec(0, config, agent, (low, low + 9))


@pytest.fixture
async def worker():
    lost: list[str] = []
    process, link = await start_worker(_spec(42000), lost.append)
    assert await wait_until_async(lambda: link.status is not None, 10.0), "no heartbeat from the worker"
    yield process, link, lost
    await link.close()
    process.join(5)
    if process.is_alive():
        process.kill()


async def test_a_call_s_media_runs_in_the_worker(worker):
    process, link, _ = worker
    assert link.status.pid == process.pid and link.status.sessions == 0
    loop = asyncio.get_running_loop()
    transport, phone = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
    events: list[m.MediaEvent] = []
    media = RemoteMedia(link, events.append, agent_timeout=2.0, worker=3)
    try:
        opened = await media.open(m.OpenMedia("call-1", "inbound", "alice", ("127.0.0.1", 5060)))
        assert isinstance(opened, m.MediaOpened) and 42000 <= opened.port <= 42009
        assert opened.worker == 3  # the call's view names the worker holding its media
        media.update(m.UpdateMedia(m.PhoneMedia("PCMU", 0, 101, transport.get_extra_info("sockname"))))
        media.start_sending(m.StartSending())
        media.send_digits(m.SendDigits("9"))
        assert await wait_until_async(lambda: any(isinstance(e, m.DigitsSent) for e in events), 10.0)
        assert await wait_until_async(lambda: len(phone.packets) >= 25, 10.0)
        unavailable = await media.connect_agent(m.ConnectAgent())
        assert isinstance(unavailable, m.AgentUnavailable) and unavailable.reason
        await link.pull_stats()  # one request for every call of the worker
        stats = media.stats(m.StatsRequest())  # reading never waits on the worker
        assert stats.codec == "PCMU" and stats.counters.rtp_packets_sent >= 25
        final = await media.close(m.CloseMedia("caller hung up"))
        assert final.counters.rtp_packets_sent >= stats.counters.rtp_packets_sent
        assert await wait_until_async(lambda: link.status.sessions == 0, 10.0)
    finally:
        transport.close()
    packets = [parse_rtp(data) for data in phone.packets]
    digits = [parse_event(p.payload).digit for p in packets if p.payload_type == 101]
    assert digits and set(digits) == {"9"}


async def test_a_worker_that_dies_is_noticed_within_a_second_and_fails_what_waits(worker):
    process, link, lost = worker
    media = RemoteMedia(link, lambda event: None, agent_timeout=30.0)
    opened = await media.open(m.OpenMedia("call-2", "inbound", None, None))
    assert isinstance(opened, m.MediaOpened)
    media.update(m.UpdateMedia(m.PhoneMedia("PCMU", 0, None, ("127.0.0.1", 9))))
    waiting = asyncio.ensure_future(link.request("call-2", m.StatsRequest(), timeout=30))
    os.kill(process.pid, signal.SIGKILL)
    killed = time.monotonic()
    with pytest.raises(WorkerLost):
        await waiting
    assert await wait_until_async(lambda: bool(lost), 1.0) and time.monotonic() - killed < 1.0
    refused = await media.open(m.OpenMedia("call-3", "inbound", None, None))
    assert isinstance(refused, m.MediaRefused) and "media worker unavailable" in refused.reason


async def test_a_command_for_an_unknown_call_is_answered_not_crashed_on(worker):
    _, link, _ = worker
    reply = await link.request("nobody", m.StatsRequest())
    assert isinstance(reply, m.Failed) and "no media session" in reply.reason
    assert link.lost is None


async def test_media_placed_but_never_opened_gives_its_place_back(worker):
    _, link, _ = worker
    media = RemoteMedia(link, lambda event: None, agent_timeout=2.0)
    assert link.calls == 1  # counted from placement: calls placed at once spread over the workers
    await media.close(m.CloseMedia("refused before its media opened"))
    await media.close(m.CloseMedia("again"))
    assert link.calls == 0
