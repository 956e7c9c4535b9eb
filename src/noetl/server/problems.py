"""Errors as JSON problem responses: the one place where exceptions become HTTP answers.

Every error response has the same shape, ``{"detail": {"reason": <what and where>, "code": <kind>,
...context}}``, where the context is the error's own fields (``line``, ``column``, ``step``,
``field`` for an invalid playbook; ``status`` for a conflict). The status is the error's
``http_status`` (see ``noetl.errors``); request bodies that do not validate get 422 with
``code: "invalid_request"``; PostgreSQL out of reach gets 503 with ``Retry-After``.

The HTTP-only errors of the tree live here::

    NoetlError
    ├── NotFound      the execution, catalog entry, credential or worker does not exist   404
    └── Conflict      the request contradicts the current state (``code`` says how)     409
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from noetl.errors import NoetlError

RETRY_AFTER_SECONDS = "1"


class NotFound(NoetlError):
    """The thing a request names does not exist."""

    http_status = 404

    @property
    def kind(self) -> str:
        return "not_found"


class Conflict(NoetlError):
    """The request contradicts the current state, e.g. cancelling a finished execution."""

    http_status = 409

    def __init__(self, message: str, *, code: str, **context: object) -> None:
        super().__init__(message)
        self.code = code
        self.context = context

    @property
    def kind(self) -> str:
        return self.code

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), **self.context}


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    app.add_exception_handler(NoetlError, _noetl_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RecursionError, _too_deep)
    _install_driver_handlers(app)


def problem(status: int, reason: str, code: str, /, **context: object) -> JSONResponse:
    """A problem response; 503 answers carry ``Retry-After``."""
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if status == 503 else None
    body = {"detail": {"reason": reason, "code": code, **context}}
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


async def _noetl_error(_request: Request, exc: NoetlError) -> JSONResponse:
    context = {k: v for k, v in exc.to_dict().items() if k != "kind"}
    return problem(exc.http_status, str(exc), exc.kind, **context)


async def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [_validation_entry(e) for e in exc.errors()]
    first = errors[0] if errors else {"loc": "", "msg": "invalid request"}
    reason = f"invalid request: {first['loc']}: {first['msg']}" if first["loc"] else str(first["msg"])
    return problem(422, reason, "invalid_request", errors=errors)


def _validation_entry(error: Any) -> dict[str, object]:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return {"loc": location, "msg": str(error.get("msg", "")), "type": str(error.get("type", ""))}


async def _http_error(_request: Request, exc: HTTPException) -> JSONResponse:
    response = problem(exc.status_code, str(exc.detail), f"http_{exc.status_code}")
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _too_deep(_request: Request, _exc: Exception) -> JSONResponse:
    """A request body nested so deeply that parsing it exhausted the stack: the client's error."""
    return problem(400, "the request body is nested too deeply", "invalid_request")


def _install_driver_handlers(app: FastAPI) -> None:
    """Connection trouble outside a store call (taking a pooled connection) is a 503 too."""
    import psycopg
    import psycopg.errors
    import psycopg_pool

    async def unavailable(_request: Request, exc: Exception) -> JSONResponse:
        return problem(503, f"PostgreSQL unavailable: {exc}", "store_unavailable")

    async def out_of_range(_request: Request, _exc: Exception) -> JSONResponse:
        return problem(
            400, "a number in the request is out of range (e.g. offset, page or an id)", "invalid_request"
        )

    app.add_exception_handler(psycopg.errors.NumericValueOutOfRange, out_of_range)
    app.add_exception_handler(psycopg_pool.PoolTimeout, unavailable)
    app.add_exception_handler(psycopg.OperationalError, unavailable)
