"""Whether a call is recorded, where its file goes, and how the call shows it.

A call is recorded when ``POST /calls`` said ``"record": true``, or (not said) when its provider's
``record`` setting says so, or (not set) the global ``record``. The file is ``recordings_dir/<call
id>.wav`` (or ``.ogg``: ``recording_format``); the media side writes it from the answer on
(``media_session/recorder.py``). The call lists it once answered, in ``GET /calls/{id}`` and in its
call record, with the reason when it stopped early.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..media.recording_file import FORMATS

if TYPE_CHECKING:
    from ..config import Config


@dataclass
class CallRecording:
    file: str  # its name in recordings_dir
    format: str  # wav or ogg
    path: str  # absolute: the media workers open it
    started: bool = False  # the call was answered: the media side is writing it
    error: str | None = None  # why it stopped early (or never started)

    def view(self) -> dict[str, Any] | None:
        """What GET /calls/{id} and the call record show; None before the answer."""
        if not self.started:
            return None
        view: dict[str, Any] = {"file": self.file, "format": self.format}
        if self.error is not None:
            view["error"] = self.error
        return view


def records_calls(config: Config, provider: str | None) -> bool:
    """The ``record`` setting a call follows: its provider's, else the global one."""
    own = next((p.record for p in config.providers if p.name == provider), None)
    return own if own is not None else config.record


def plan_recording(
    config: Config, call_id: str, provider: str | None, asked: bool | None = None
) -> CallRecording | None:
    """The call's recording, or None when it is not recorded (``asked``: what POST /calls said)."""
    wanted = records_calls(config, provider) if asked is None else asked
    if not wanted or config.recordings_dir is None:
        return None
    name = call_id + FORMATS[config.recording_format]
    path = Path(config.recordings_dir).expanduser().resolve() / name
    return CallRecording(name, config.recording_format, str(path))


def prepare_recordings_dir(folder: str) -> Path:
    """``folder`` created if missing and checked writable (a file made and removed); raises OSError."""
    path = Path(folder).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
        pass
    return path


def recording_path(config: Config, view: dict[str, Any] | None) -> Path | None:
    """The file a call's recording view names, if it is a file inside recordings_dir (never a path
    elsewhere, whatever the view says); None otherwise."""
    if not view or config.recordings_dir is None:
        return None
    name = view.get("file")
    if not isinstance(name, str) or not name or Path(name).name != name or name.startswith("."):
        return None
    folder = Path(config.recordings_dir).expanduser().resolve()
    path = (folder / name).resolve()
    if path.parent != folder or not path.is_file():
        return None
    return path
