"""The FastAPI application: security middleware, one error shape, auth, and the routers (JSON API under
``/api``, pages at ``/``).

Every error is JSON ``{"error": "<one line>"}`` with a 4xx status (pages render the same line); an
unexpected bug answers 500 ``{"error": "internal error ..."}`` with the traceback in the server log only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from medlens import __version__
from medlens.errors import MedlensError
from medlens.serving.auth import COOKIE, CSRF_FIELD, CSRF_HEADER, LoginLimiter, csrf_ok, get_session
from medlens.serving.service import NotFound, ServeSettings, Service
from medlens.serving.uploads import UploadRejected

log = logging.getLogger("medlens.serve")
STATIC = Path(__file__).parent / "static"
#: No inline scripts or styles: everything comes from /static (no CDN; the app works offline).
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
#: Reports (report.html, audit.html) are self-contained pages with an inline stylesheet and data: figures,
#: and no script: served in a sandbox that runs nothing and reaches nothing.
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'self'; sandbox"
)
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class AuthError(Exception):
    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


def create_app(settings: ServeSettings, service: Service | None = None) -> FastAPI:
    """The app for ``settings`` (a ready ``service`` may be passed, e.g. by tests)."""
    if settings.no_auth and settings.host not in ("127.0.0.1", "localhost", "::1"):
        raise MedlensError(
            f"--no-auth is refused on host {settings.host}: anyone who reaches it could use it; serve on "
            "127.0.0.1 or keep the token"
        )
    service = service or Service(settings)
    app = FastAPI(
        title="medlens",
        version=__version__,
        description="Medical image analysis: datasets, runs, studies, explanations and the worklist.",
    )
    app.state.service = service
    app.state.settings = settings
    app.state.limiter = LoginLimiter()

    max_body = int(settings.max_upload_mb * 2**20) + 2**20  # the largest upload plus its multipart framing

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        try:
            length = int(request.headers.get("content-length") or 0)
        except ValueError:
            length = 0
        if length > max_body:  # refused before a byte is read or spooled to disk
            response = JSONResponse(
                {
                    "error": f"request of {length / 2**20:.0f} MB is over the {settings.max_upload_mb:g} MB "
                    "upload limit; upload less (or start the server with a larger --max-upload-mb)"
                },
                413,
            )
        else:
            try:
                response = await call_next(request)
            except Exception:  # a bug below every handler: never a traceback to the client
                log.exception("unhandled error on %s %s", request.method, request.url.path)
                response = JSONResponse({"error": "internal error; the server log has the details"}, 500)
        response.headers.setdefault("Content-Security-Policy", CSP)  # a report sets its own, sandboxed
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "SAMEORIGIN"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = response.headers.get("Cache-Control", "no-store")
        return response

    @app.exception_handler(AuthError)
    async def _auth(request: Request, err: AuthError):
        if _wants_html(request) and err.status == 401:
            from fastapi.responses import RedirectResponse

            return RedirectResponse("/login", status_code=303)
        return JSONResponse({"error": str(err)}, err.status, headers=_www(err.status))

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, err: NotFound):
        return JSONResponse({"error": str(err)}, 404)

    @app.exception_handler(UploadRejected)
    async def _rejected(request: Request, err: UploadRejected):
        return JSONResponse({"error": str(err)}, err.status)

    @app.exception_handler(MedlensError)
    async def _user_error(request: Request, err: MedlensError):
        status = getattr(err, "status", 400)  # a Refused error carries its own (403, 404, 422)
        return JSONResponse({"error": str(err).splitlines()[0] if str(err) else "bad request"}, status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException):
        return JSONResponse(
            {"error": str(err.detail)}, err.status_code, headers=getattr(err, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _bug(request: Request, err: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error; the server log has the details"}, 500)

    from medlens.serving import api, pages

    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def api_actor(request: Request) -> str:
    """Dependency of the JSON API: Bearer token, or a session cookie with the X-CSRF-Token header on
    anything that changes state."""
    return authenticate(request)


def page_actor(request: Request) -> str:
    """Dependency of the pages: a session cookie (forms carry the CSRF token as a field, checked by the
    route with :func:`check_form_csrf`)."""
    return authenticate(request, form_csrf=True)


def authenticate(request: Request, *, form_csrf: bool = False) -> str:
    """The caller's name for the audit log ("api", "browser" or "local"), or AuthError: a Bearer token, or
    a session cookie (with the CSRF token on anything that changes state)."""
    settings: ServeSettings = request.app.state.settings
    if settings.no_auth:
        return "local"
    service: Service = request.app.state.service
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        from medlens.serving.auth import check_token

        with service.Session() as db:
            if scheme.lower() == "bearer" and check_token(db, token.strip()):
                return "api"
        raise AuthError("invalid token: send Authorization: Bearer <the token printed at first start>")
    with service.Session() as db:
        session = get_session(db, request.cookies.get(COOKIE))
    if session is None:
        raise AuthError("authentication required: send Authorization: Bearer <token>, or log in at /login")
    request.state.session = session
    if request.method in UNSAFE and not form_csrf and not csrf_ok(session, request.headers.get(CSRF_HEADER)):
        raise AuthError("missing or wrong CSRF token; reload the page and try again", status=403)
    return "browser"


def check_form_csrf(request: Request, form) -> None:
    """Pages: a form post must carry the session's CSRF token."""
    session = getattr(request.state, "session", None)
    if session is None and request.app.state.settings.no_auth:
        return
    if session is None or not csrf_ok(session, form.get(CSRF_FIELD)):
        raise AuthError("missing or wrong CSRF token; reload the page and try again", status=403)


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api") and "text/html" in request.headers.get("accept", "")


def _www(status: int) -> dict[str, str] | None:
    return {"WWW-Authenticate": "Bearer"} if status == 401 else None
