"""The REST API on port 8090: thin, validates input, asks the CallManager, serialises the answer."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .. import __version__
from ..calls.manager import CallManager


def create_app(manager: CallManager) -> FastAPI:
    app = FastAPI(title="sipbridge", version=__version__, summary="SIP phone calls into a voice agent")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request", "details": exc.errors()}, status_code=422)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "version": __version__,
            "calls_active": len(manager.active),
            "max_calls": manager.max_calls,
            "load": round(manager.load, 3),
            "calls_total": manager.total_calls,
            "calls_rejected_busy": manager.rejected_busy,
            "rtp_ports_in_use": manager.ports.in_use,
            "rtp_ports_total": manager.ports.capacity,
        }

    @app.get("/calls")
    async def list_calls() -> dict[str, Any]:
        return {"calls": [call.to_dict() for call in manager.list_active()]}

    @app.get("/calls/{call_id}")
    async def get_call(call_id: str) -> dict[str, Any]:
        call = manager.get(call_id)
        if call is None:
            raise HTTPException(404, f"no call with id {call_id!r}")
        return call.to_dict()

    return app
