"""The pages of logging in and out, and the dashboard (runs, datasets and the latest jobs)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from medlens.serving.app import AuthError, page_actor
from medlens.serving.auth import COOKIE, check_token, end_session, get_session, new_session
from medlens.serving.pages_common import (
    MAX_FORM_FIELDS,
    _forbidden,
    _svc,
    _text,
    key_metrics,
    read_form,
    render,
    see_other,
)

router = APIRouter(include_in_schema=False)


# -- login ---------------------------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    if request.app.state.settings.no_auth:
        return see_other("/")
    with _svc(request).Session() as db:
        if get_session(db, request.cookies.get(COOKIE)) is not None:
            return see_other("/")
    return render(request, "login.html", title="Log in")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    limiter = request.app.state.limiter
    client = request.client.host if request.client else "unknown"
    if limiter.blocked(client):
        return render(
            request, "login.html", status=429, title="Log in", error="too many failed logins; wait a minute"
        )
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    token = _text(form, "token")
    service = _svc(request)
    with service.Session() as db:
        ok = check_token(db, token)
        session = new_session(db) if ok else None
        session_id = session.id if session else None
    if not ok:
        limiter.failed(client)
        message = "wrong token; use the token printed when the server first started"
        return render(request, "login.html", status=401, title="Log in", error=message)
    limiter.succeeded(client)
    response = see_other("/")
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="strict",
        path="/",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request, actor: str = Depends(page_actor)) -> Response:
    try:
        await read_form(request)
    except AuthError as err:
        return _forbidden(request, err)
    with _svc(request).Session() as db:
        end_session(db, request.cookies.get(COOKIE))
    response = see_other("/login" if not request.app.state.settings.no_auth else "/")
    response.delete_cookie(COOKIE, path="/")
    return response


# -- dashboard ---------------------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, actor: str = Depends(page_actor)) -> Response:
    service = _svc(request)
    runs = service.list_runs()
    for run in runs:
        run["key_metrics"] = key_metrics(run["metrics"])
    return render(
        request,
        "dashboard.html",
        title="Dashboard",
        nav="dashboard",
        runs=runs,
        datasets=service.list_datasets(),
        jobs=service.list_jobs(limit=10),
    )
