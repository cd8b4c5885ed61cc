"""GET /calls/{id}/recording: a call's recording file, streamed from recordings_dir.

Only the file the call's own view names, and only inside recordings_dir (``recording_path``). The
file of a call still going on grows while it is read: what is sent is what was on disk when the
request came (its size then is the ``Content-Length``), which a WAV's header, patched each second,
describes whole, and whose last Ogg page at worst is cut short.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

from fastapi import HTTPException
from fastapi.responses import StreamingResponse

from ..calls.recording import recording_path
from ..config import Config
from ..media.recording_file import MEDIA_TYPES

CHUNK_BYTES = 256 * 1024


def recording_response(config: Config, call_id: str, view: dict[str, Any] | None) -> StreamingResponse:
    """The recording ``view`` names as a response; 404 when there is none (not recorded, not answered,
    or its file is gone)."""
    path = recording_path(config, view)
    if path is None or view is None:
        raise HTTPException(404, f"call {call_id!r} has no recording")
    try:
        handle = path.open("rb")
        size = path.stat().st_size
    except OSError:
        raise HTTPException(404, f"call {call_id!r} has no recording") from None
    headers = {
        "Content-Length": str(size),
        "Content-Disposition": f'attachment; filename="{path.name}"',
    }
    media_type = MEDIA_TYPES.get(str(view.get("format")), "application/octet-stream")
    return StreamingResponse(_read(handle, size), media_type=media_type, headers=headers)


async def _read(handle: BinaryIO, size: int) -> AsyncIterator[bytes]:
    """``size`` bytes of ``handle`` (a file being written may have more by now), read off the loop."""
    try:
        left = size
        while left > 0:
            chunk = await asyncio.to_thread(handle.read, min(CHUNK_BYTES, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        handle.close()
