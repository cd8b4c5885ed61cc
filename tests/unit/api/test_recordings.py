"""GET /calls/{id}/recording and POST /calls {"record": ...}, without sockets: behind the API key,
only the file the call names inside recordings_dir, 404 when there is none, ended calls too."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from sipbridge.api.app import create_app
from sipbridge.calls.call import Call
from sipbridge.calls.manager import CallManager
from sipbridge.calls.recording import recording_path
from sipbridge.media_session.messages import RecordingFailed
from sipbridge.providers.provider import Providers
from sipbridge.rtp.ports import PortAllocator
from sipbridge.settings.provider import ProviderConfig
from sipbridge.settings.values import HostPort

KEY = "recording-test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
TRUNK = ProviderConfig(
    name="trunk", type="generic", address=HostPort("127.0.0.1", 5099), destinations=(r"^1[0-9]{3}$",)
)


class HeldPorts(PortAllocator):
    """RTP ports that never come: a placed call stays 'dialing' until shut down."""

    async def open_pair(self, host: str, factory: Callable[[], Any], companion: Any) -> Any:
        await asyncio.Event().wait()


def _client(manager: CallManager) -> httpx.AsyncClient:
    app = create_app(manager, Providers((TRUNK,)), SimpleNamespace(), (KEY,))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8090")


def _answered(make_call, manager: CallManager) -> Call:
    """A recorded call as answered, its file written (by hand: the media side is a stub here)."""
    call = make_call(manager)
    assert call.recording is not None
    call.answered(0.0)
    Path(call.recording.path).write_bytes(b"RIFF-and-some-audio")
    return call


async def test_the_recording_is_served_with_the_key_only(make_manager, make_call, tmp_path: Path) -> None:
    manager = make_manager(record=True, recordings_dir=str(tmp_path))
    call = _answered(make_call, manager)
    async with _client(manager) as client:
        assert (await client.get(f"/calls/{call.id}/recording")).status_code == 401
        bad = {"Authorization": "Bearer not-the-key-0123456789"}
        assert (await client.get(f"/calls/{call.id}/recording", headers=bad)).status_code == 401
        response = await client.get(f"/calls/{call.id}/recording", headers=AUTH)
        view = (await client.get(f"/calls/{call.id}", headers=AUTH)).json()
    assert response.status_code == 200 and response.content == b"RIFF-and-some-audio"
    assert response.headers["content-type"] == "audio/wav"
    assert response.headers["content-disposition"] == f'attachment; filename="{call.id}.wav"'
    assert view["recording"] == {"file": f"{call.id}.wav", "format": "wav"}


async def test_an_ended_call_keeps_its_recording_while_the_file_exists(
    make_manager, make_call, tmp_path: Path
) -> None:
    manager = make_manager(record=True, recordings_dir=str(tmp_path), recording_format="ogg")
    call = _answered(make_call, manager)
    call.mark_ended("caller hung up")
    assert call.id not in manager.active
    async with _client(manager) as client:
        response = await client.get(f"/calls/{call.id}/recording", headers=AUTH)
        assert response.status_code == 200 and response.headers["content-type"] == "audio/ogg"
        Path(tmp_path / f"{call.id}.ogg").unlink()  # the operator's retention removed it
        gone = await client.get(f"/calls/{call.id}/recording", headers=AUTH)
    assert gone.status_code == 404 and gone.json() == {"error": f"call {call.id!r} has no recording"}


async def test_no_recording_is_a_404(make_manager, make_call, tmp_path: Path) -> None:
    manager = make_manager(recordings_dir=str(tmp_path))  # record = false
    unrecorded = make_call(manager)
    unrecorded.answered(0.0)
    recorded_manager = make_manager(record=True, recordings_dir=str(tmp_path))
    ringing = make_call(recorded_manager)  # recorded, but not answered yet: no file
    async with _client(manager) as client:
        assert (await client.get("/calls/nope/recording", headers=AUTH)).status_code == 404
        response = await client.get(f"/calls/{unrecorded.id}/recording", headers=AUTH)
        assert response.status_code == 404 and "has no recording" in response.json()["error"]
        assert (await client.get(f"/calls/{unrecorded.id}", headers=AUTH)).json()["recording"] is None
    async with _client(recorded_manager) as client:
        assert (await client.get(f"/calls/{ringing.id}/recording", headers=AUTH)).status_code == 404


async def test_a_failed_recording_is_shown_with_its_reason(make_manager, make_call, tmp_path: Path) -> None:
    manager = make_manager(record=True, recordings_dir=str(tmp_path))
    call = _answered(make_call, manager)
    call.media.emit(RecordingFailed("recording stopped: No space left on device"))
    assert call.to_dict()["recording"]["error"] == "recording stopped: No space left on device"


@pytest.mark.parametrize("name", ["../secret.wav", "/etc/passwd", "", ".hidden.wav", "sub/x.wav", None, 7])
def test_only_a_file_inside_recordings_dir_is_ever_named(make_manager, tmp_path: Path, name: Any) -> None:
    folder = tmp_path / "recordings"
    (folder / "sub").mkdir(parents=True)
    for path in (tmp_path / "secret.wav", folder / ".hidden.wav", folder / "sub" / "x.wav"):
        path.write_bytes(b"x")
    config = make_manager(recordings_dir=str(folder)).config
    assert recording_path(config, {"file": name, "format": "wav"}) is None


def test_a_link_out_of_recordings_dir_is_not_followed(make_manager, tmp_path: Path) -> None:
    folder = tmp_path / "recordings"
    folder.mkdir()
    (tmp_path / "secret.wav").write_bytes(b"x")
    (folder / "link.wav").symlink_to(tmp_path / "secret.wav")
    (folder / "real.wav").write_bytes(b"x")
    config = make_manager(recordings_dir=str(folder)).config
    assert recording_path(config, {"file": "link.wav"}) is None
    assert recording_path(config, {"file": "real.wav"}) == folder.resolve() / "real.wav"


async def test_post_calls_may_ask_for_a_recording(make_manager, tmp_path: Path) -> None:
    manager = make_manager(ports=HeldPorts(40000, 40019), recordings_dir=str(tmp_path))
    try:
        async with _client(manager) as client:
            asked = await client.post(
                "/calls", json={"provider": "trunk", "to": "1001", "record": True}, headers=AUTH
            )
            plain = await client.post("/calls", json={"provider": "trunk", "to": "1002"}, headers=AUTH)
            wrong = await client.post(
                "/calls", json={"provider": "trunk", "to": "1003", "record": "yes"}, headers=AUTH
            )
        assert asked.status_code == 201 and plain.status_code == 201, (asked.text, plain.text)
        assert wrong.status_code == 422
        recorded = manager.active[asked.json()["id"]]
        assert recorded.recording is not None
        assert recorded.recording.path == str(tmp_path.resolve() / f"{recorded.id}.wav")
        assert manager.active[plain.json()["id"]].recording is None  # record = false, the default
    finally:
        await manager.shutdown()


async def test_post_calls_may_not_record_without_recordings_dir(make_manager) -> None:
    manager = make_manager(ports=HeldPorts(40000, 40019))
    async with _client(manager) as client:
        response = await client.post(
            "/calls", json={"provider": "trunk", "to": "1001", "record": True}, headers=AUTH
        )
    assert response.status_code == 422 and "recordings_dir" in response.json()["error"]
    assert not manager.active
