"""The review web app: FastAPI routes over the results database, with Jinja2 templates and static files.

Safe by default (issue 25, item 5):
- it listens on 127.0.0.1, and only answers requests addressed to this machine's loopback names (a web
  page elsewhere cannot reach it through DNS rebinding);
- listening on any other address, it refuses every request (403) until the browser presents the token
  printed at start, once, as ?token=...; the session cookie then carries the permission;
- every POST carries the session's CSRF token in the X-CSRF-Token header, else 403;
- a picture is served only for an image the results database holds (tasks/review/pictures.py);
- the reviewer's name is the app's (the CLI's --reviewer), never a value of the request: an answer with
  any field besides those documented is refused (422).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import urllib.parse
from pathlib import Path

import fastapi
import pydantic
import sqlalchemy as sa
from fastapi import responses, staticfiles, templating
from starlette.middleware import base as middleware_base
from starlette.middleware import sessions, trustedhost

from tasks.review import pictures, queue
from tasks.review.config import ReviewConfig
from tasks.store import reviews_sql

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]
CSRF_HEADER = "X-CSRF-Token"
REVIEW_ID = r"^[A-Za-z0-9_-]{8,64}$"  # made by the page: 32 hex digits


class Answer(pydantic.BaseModel):
    """POST /api/answers: what a person says image (image_uri, content_hash) shows."""
    model_config = pydantic.ConfigDict(extra="forbid")  # a "reviewer" field is refused, not ignored

    review_id: str = pydantic.Field(pattern=REVIEW_ID)  # the answer's own key: a resent POST writes once
    image_uri: str
    content_hash: str
    model_version: str  # whose candidates the person saw
    label: str | None  # one of the model's classes; None: "none of these classes"


class Retraction(pydantic.BaseModel):
    """POST /api/retractions: take back the answer `answer_id` (an undo), as a new row `review_id`."""
    model_config = pydantic.ConfigDict(extra="forbid")

    review_id: str = pydantic.Field(pattern=REVIEW_ID)
    answer_id: str = pydantic.Field(pattern=REVIEW_ID)


def create_app(config: ReviewConfig, engine: sa.Engine) -> fastapi.FastAPI:
    """The app for `config`, reading and writing the (migrated) results database behind `engine`."""
    app = fastapi.FastAPI(title="hashtagger review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config, app.state.engine = config, engine
    templates = templating.Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", staticfiles.StaticFiles(directory=str(HERE / "static")), name="static")
    _routes(app, templates)
    # add_middleware wraps what is there: the last added runs first (host check, session, token gate)
    app.add_middleware(middleware_base.BaseHTTPMiddleware, dispatch=_token_gate)
    app.add_middleware(sessions.SessionMiddleware, secret_key=config.session_secret,
                       session_cookie="hashtagger_review", same_site="strict", max_age=12 * 3600)
    if not config.needs_token:
        # the loopback names, and the loopback address it was told to bind (127.0.0.2 is loopback too)
        app.add_middleware(trustedhost.TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS + [config.host])
    return app


async def _token_gate(request: fastapi.Request, call_next):
    """Beyond loopback: 403 unless the session holds the permission or the request brings the token."""
    config: ReviewConfig = request.app.state.config
    if not config.needs_token or request.session.get("authorized"):
        return await call_next(request)
    offered = request.query_params.get("token", "")
    if offered and hmac.compare_digest(offered.encode(), config.token.encode()):
        request.session["authorized"] = True
        # the same address without the token, so that it stays out of the history and the logs
        query = urllib.parse.urlencode([(key, value) for key, value in request.query_params.multi_items()
                                        if key != "token"])
        # one leading slash: '//host/' would be a protocol-relative address, another site
        path = "/" + request.url.path.lstrip("/")
        return responses.RedirectResponse(path + (f"?{query}" if query else ""), status_code=303)
    log.warning("refused %s %s from %s: no token", request.method, request.url.path,
                request.client.host if request.client else "?")
    return responses.PlainTextResponse("403: this review app needs the token printed when it started "
                                       "(open the address it printed)", status_code=403)


def _csrf_token(request: fastapi.Request) -> str:
    """The session's CSRF token, made on its first page."""
    if "csrf" not in request.session:
        request.session["csrf"] = secrets.token_urlsafe(32)
    return request.session["csrf"]


def require_csrf(request: fastapi.Request) -> None:
    """403 unless the request's X-CSRF-Token header is the session's token."""
    expected = request.session.get("csrf")
    offered = request.headers.get(CSRF_HEADER, "")
    if not expected or not hmac.compare_digest(offered.encode(), expected.encode()):
        raise fastapi.HTTPException(status_code=403, detail="missing or wrong CSRF token: reload the page")


def _filter(run: str | None, source: str | None, label: str | None, model: str | None) -> reviews_sql.QueueFilter:
    """The queue's filter from query parameters; an empty one means any."""
    return reviews_sql.QueueFilter(run or None, source or None, label or None, model or None)


def _routes(app: fastapi.FastAPI, templates: templating.Jinja2Templates) -> None:
    config: ReviewConfig = app.state.config
    engine: sa.Engine = app.state.engine

    @app.get("/", response_class=responses.HTMLResponse)
    def page(request: fastapi.Request, run: str | None = None, source: str | None = None,
             label: str | None = None, model: str | None = None):
        chosen = _filter(run, source, label, model)
        return templates.TemplateResponse(request, "review.html", {
            "csrf": _csrf_token(request), "reviewer": config.reviewer, "chosen": chosen,
            "choices": reviews_sql.filter_choices(engine), "accuracy": reviews_sql.reviewed_accuracy(engine)})

    @app.get("/api/queue")
    def next_cards(run: str | None = None, source: str | None = None, label: str | None = None,
                   model: str | None = None, limit: int = fastapi.Query(default=None, ge=1, le=1000)):
        return queue.load(engine, _filter(run, source, label, model), limit or config.queue_size)

    @app.get("/picture")
    def picture(uri: str, hash: str):  # noqa: A002  the query parameter's name
        try:
            data = pictures.picture_jpeg(engine, uri, hash, config.picture_px, config.max_read_bytes)
        except pictures.NoPicture as error:
            log.info("no picture for %r: %s", uri, error)
            raise fastapi.HTTPException(status_code=404, detail="no such image in the results database") from None
        return responses.Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/api/answers", dependencies=[fastapi.Depends(require_csrf)])
    def answer(body: Answer):
        if not queue.allowed_label(engine, body.model_version, body.label):
            raise fastapi.HTTPException(status_code=422, detail=f"{body.label!r} is not a class of that model")
        try:
            reviews_sql.record_answer(engine, body.review_id, body.image_uri, body.content_hash,
                                      body.model_version, body.label, config.reviewer)
        except reviews_sql.ReviewConflict as error:
            raise fastapi.HTTPException(status_code=409, detail=str(error)) from None
        except reviews_sql.ReviewRefused as error:
            raise fastapi.HTTPException(status_code=404, detail=str(error)) from None
        return {"recorded": body.review_id, "label": body.label}

    @app.post("/api/retractions", dependencies=[fastapi.Depends(require_csrf)])
    def retraction(body: Retraction):
        try:
            image_uri, content_hash, model_version = reviews_sql.retract(engine, body.review_id, body.answer_id,
                                                                         config.reviewer)
        except reviews_sql.ReviewRefused as error:
            raise fastapi.HTTPException(status_code=404, detail=str(error)) from None
        return {"retracted": body.answer_id, "image_uri": image_uri, "content_hash": content_hash}

    @app.get("/api/accuracy")
    def accuracy():
        return reviews_sql.reviewed_accuracy(engine)
