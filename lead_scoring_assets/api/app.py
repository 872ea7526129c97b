"""The FastAPI application: the JSON API, the dashboard pages and their static files.

``create_app()`` reads its settings from the environment (database URL, API keys, cursor
secret); ``lead-scoring serve`` runs it with uvicorn.
"""

import logging
import os
import re
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lead_scoring_assets.api.auth import ApiKeys
from lead_scoring_assets.api.cursor import CURSOR_SECRET_ENV, BadCursor, CursorSigner
from lead_scoring_assets.api.dagster_runs import DagsterRuns
from lead_scoring_assets.api.i18n import labels_for
from lead_scoring_assets.api.queries import BadPhone, NotFound, ScoreReader
from lead_scoring_assets.api.routes import router
from lead_scoring_assets.db.database import Database, default_database_url

HERE = Path(__file__).parent
CONNECTIONS = 16
"""Per server process: request threads and pooled database connections, one each, so a
request never waits for a connection to be opened."""
log = logging.getLogger(__name__)
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""On every response: only the app's own scripts, styles and requests, no framing, no sniffing,
no referrer. Every response but the static files also gets ``Cache-Control: no-store`` (the
API's answers hold personal data)."""


class HidePhones(logging.Filter):
    """Access-log lines without the phone numbers of ``/lookup?phone=…`` requests."""

    PHONE = re.compile(r"(phone=)[^&\s]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self.PHONE.sub(r"\1[hidden]", a) if isinstance(a, str) else a for a in record.args
            )
        return True


def hide_phones_in_access_log() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, HidePhones) for f in access.filters):
        access.addFilter(HidePhones())


class SecurityHeaders:
    """``SECURITY_HEADERS`` and, but on the static files, ``Cache-Control: no-store`` on every
    response: plain ASGI, which costs a request less than ``@app.middleware("http")`` (no
    task group, no response stream)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = not scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.update(SECURITY_HEADERS)
                if no_store:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _plan_for_parameters(connection, _record) -> None:
    """psycopg prepares a statement run five times on a connection and PostgreSQL may then
    switch to its generic plan, which opens every partition of the card's partitioned tables
    (three times the cost of a plan made for the contact): plan each statement for its
    parameters."""
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_custom_plan")
    connection.commit()  # kept by the session, whichever isolation level comes next


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _validation_message(error: RequestValidationError) -> str:
    """Which parameter is wrong and why: the location and the declared parameter's name only
    (never a value, which may be a phone, nor a key inside it)."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"][:2])
        parts.append(f"{where}: {item['msg']}")
    return "invalid request: " + "; ".join(parts)


def create_app(
    database_url: str | None = None,
    keys: ApiKeys | None = None,
    cursor_secret: str | None = None,
    dagster: DagsterRuns | None = None,
) -> FastAPI:
    secret = cursor_secret or os.environ.get(CURSOR_SECRET_ENV)
    if not secret:
        raise ValueError(
            f"no cursor secret: set {CURSOR_SECRET_ENV} (lead-scoring serve makes "
            "one per start when it is unset)"
        )
    url = database_url or default_database_url()
    pool = {"pool_size": CONNECTIONS, "max_overflow": 0} if url.startswith("postgresql") else {}
    # hide_parameters: a database error (logged by the server) never carries a looked-up phone;
    # AUTOCOMMIT: each statement stands alone, no BEGIN and ROLLBACK round trips per request
    database = Database(url, hide_parameters=True, isolation_level="AUTOCOMMIT", **pool)
    if database.dialect == "postgresql":
        sa.event.listen(database.engine, "connect", _plan_for_parameters)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        anyio.to_thread.current_default_thread_limiter().total_tokens = CONNECTIONS
        yield
        database.dispose()

    hide_phones_in_access_log()
    app = FastAPI(
        title="Lead scoring API",
        version="1",
        description="Read-only scores, score cards and analytics for the people who run "
        "campaigns; one write: queue a contact for rescoring. Phone numbers are "
        "always masked. Send an API key in the X-API-Key header.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN
        redoc_url=None,
    )
    app.state.keys = keys or ApiKeys.from_env()
    app.state.reader = ScoreReader(database)
    app.state.cursors = CursorSigner(secret)
    app.state.dagster = dagster or DagsterRuns()
    app.include_router(router)

    app.add_middleware(SecurityHeaders)

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, error: NotFound) -> JSONResponse:
        return _error(404, str(error))

    @app.exception_handler(BadPhone)
    async def bad_phone(_request: Request, error: BadPhone) -> JSONResponse:
        return _error(400, str(error))

    @app.exception_handler(BadCursor)
    async def bad_cursor(_request: Request, error: BadCursor) -> JSONResponse:
        return _error(400, str(error))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(error))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        route = request.scope.get("route")
        log.error(
            "%s on %s %s",
            type(error).__name__,
            request.method,
            getattr(route, "path", "(no route)"),
        )
        # answered outside the middleware below: the headers are set here
        response = _error(500, "internal server error; the server log names the error")
        response.headers.update({**SECURITY_HEADERS, "Cache-Control": "no-store"})
        return response

    templates = Jinja2Templates(directory=HERE / "templates")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def page(name: str):
        async def render(request: Request, lang: str = "es") -> HTMLResponse:
            labels = labels_for(lang)
            return templates.TemplateResponse(
                request, f"{name}.html", {"page": name, "t": labels, "lang": labels["lang"]}
            )

        return render

    for path, name in (
        ("/", "contacts"),
        ("/card", "card"),
        ("/analytics", "analytics"),
        ("/campaigns", "campaigns"),
        ("/proof", "proof"),
    ):
        app.add_api_route(
            path, page(name), methods=["GET"], response_class=HTMLResponse, include_in_schema=False
        )
    return app
