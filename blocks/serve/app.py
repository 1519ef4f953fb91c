"""The FastAPI app of one run folder: `POST /predict`, `GET /health`, `GET /schema`, `/docs`.

`create_app(run)` loads the run (or takes a loaded `BlocksModel`) and derives everything a
client sees from its spec (`blocks.serve.inputs`): request validation, the OpenAPI document,
the schema page. Answers are `blocks.run.predicting.predict_run`'s, on the raw rows the run's
own readers decode (`blocks.serve.rows`), batched across concurrent requests
(`blocks.serve.batching`). Every bad request is a 4xx whose `detail` names the row and field
(FastAPI's error shape: `type`, `loc`, `msg`); an unexpected error is a 500 without a traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import email.message
import importlib.util
import logging
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blocks.builder.model import BlocksModel
from blocks.core.errors import Problem, SpecError, escape
from blocks.core.version import __version__
from blocks.run.folder import load
from blocks.run.predicting import predict_run
from blocks.serve.batching import MicroBatcher, answers
from blocks.serve.inputs import IMAGE_FIELD, InputSchema, Limits, body_adapter, input_schema
from blocks.serve.rows import RowError, features_for, images_to_features

log = logging.getLogger("blocks.serve")
MAX_ERRORS = 20  # a body of 1,000 bad rows gets the first 20 problems and their count
INLINE_ROWS = 64  # requests with more rows are decoded in a thread, off the event loop


def create_app(run: str | Path | BlocksModel, *, limits: Limits | None = None) -> FastAPI:
    """The app serving `run` (a run folder, or a model `blocks.load` returned)."""
    limits = limits or Limits()
    model = run if isinstance(run, BlocksModel) else load(run)
    model.eval()
    schema = input_schema(model.spec, {h: model.label_names(h) for h in model.spec.head_specs})
    if schema.kind == "image":
        _require_multipart()
    adapter = body_adapter(schema, limits)
    batcher = MicroBatcher(lambda x: predict_run(model, x), limits.max_batch,
                           limits.max_wait_ms / 1000)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    app = FastAPI(title=f"blocks serve: {model.name}", version=__version__, lifespan=lifespan,
                  description=_description(model, schema))
    app.state.model, app.state.schema, app.state.batcher = model, schema, batcher
    app.add_middleware(BodyLimit, limit=limits.max_request_bytes)
    app.add_exception_handler(Exception, _internal_error)

    @app.get("/health", summary="Is the server up, and what has it served")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model.name, "batches": batcher.batches,
                "rows": batcher.rows}

    @app.get("/schema", summary="What /predict takes and answers, from the run's inputs")
    async def get_schema() -> dict[str, Any]:
        return schema.describe(limits)

    @app.post("/predict", summary="Labels and probabilities per head for raw input rows",
              openapi_extra=_request_body(schema), responses=_responses())
    async def predict(request: Request) -> JSONResponse:
        try:
            with batcher.arriving():
                x = await _read(request, schema, adapter, model, limits)
            predictions = await batcher.submit(x)
        except RowError as err:
            return _row_problem(err)
        except _Refused as err:
            return JSONResponse({"detail": err.errors}, err.status)
        except SpecError as err:  # the model refused a row (a non-finite output)
            return _model_problem(err)
        return JSONResponse({"predictions": answers(predictions)})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version,
                                   description=app.description, routes=app.routes)
            document.setdefault("components", {}).setdefault("schemas", {}).update(
                _components(schema, adapter))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _require_multipart() -> None:
    """Image runs take uploads: starlette parses them with python-multipart (the serve extra)."""
    if not any(importlib.util.find_spec(name) for name in ("python_multipart", "multipart")):
        raise SpecError(Problem("", "serving an image run needs python-multipart for uploads: "
                                "pip install 'blocks[serve]'", "missing_extra"))


# --- reading a request ---------------------------------------------------------------------------
class _Refused(Exception):
    """A request answered with a 4xx and these errors."""

    def __init__(self, status: int, errors: list[dict[str, Any]]) -> None:
        super().__init__(status)
        self.status, self.errors = status, errors


async def _read(request: Request, schema: InputSchema, adapter: Any, model: BlocksModel,
                limits: Limits) -> Any:
    content_type = request.headers.get("content-type", "application/json")
    media = email.message.Message()
    media["content-type"] = content_type
    maintype, subtype = media.get_content_maintype(), media.get_content_subtype()
    if maintype == "multipart" and subtype == "form-data":
        if schema.kind != "image":
            raise _Refused(415, [_error("unsupported_media_type", ["header", "content-type"],
                                        "multipart uploads are for runs trained on image files; "
                                        "this run takes JSON rows (application/json)")])
        blobs = await _uploads(request, limits)
        # decoding images takes a while: in a thread, so the event loop keeps serving
        return await run_in_threadpool(images_to_features, blobs, model, limits)
    if not (maintype == "application" and (subtype == "json" or subtype.endswith("+json"))):
        accepted = "application/json" + (" or multipart/form-data" if schema.kind == "image" else "")
        raise _Refused(415, [_error("unsupported_media_type", ["header", "content-type"],
                                    f"unsupported Content-Type {escape(content_type[:60])!r}; "
                                    f"send {accepted}")])
    body = await request.body()
    try:
        rows = adapter.validate_json(body)["rows"]
    except ValidationError as err:
        raise _Refused(422, _pydantic_errors(err, schema)) from None
    try:
        if schema.kind == "image" or len(rows) > INLINE_ROWS:
            return await run_in_threadpool(features_for, schema, rows, model, limits)
        return features_for(schema, rows, model, limits)  # a few rows: quicker than a thread hop
    except ValueError as err:  # a reader's own refusal, not located to a row
        raise _Refused(422, [_error("bad_input", ["body"], escape(str(err)))]) from None


async def _uploads(request: Request, limits: Limits) -> list[bytes]:
    form = await request.form(max_files=limits.max_rows, max_fields=limits.max_rows)
    blobs = []
    try:
        for key, value in form.multi_items():
            if key != IMAGE_FIELD or not isinstance(value, UploadFile):
                raise _Refused(422, [_error("unknown_field", ["body", _short(key)],
                                             f"field {escape(key[:40])!r}: upload image files "
                                             f"as fields named {IMAGE_FIELD!r}")])
            blobs.append(await value.read())
    finally:
        await form.close()
    if not blobs:
        raise _Refused(422, [_error("missing", ["body", IMAGE_FIELD],
                                     f"no {IMAGE_FIELD!r} file field in the upload")])
    return blobs


# --- errors --------------------------------------------------------------------------------------
def _error(kind: str, loc: list[Any], msg: str) -> dict[str, Any]:
    return {"type": kind, "loc": loc, "msg": msg}


def _problem(status: int, kind: str, loc: list[Any], msg: str) -> JSONResponse:
    return JSONResponse({"detail": [_error(kind, loc, msg)]}, status)


def _where(row: int | None, field: str | int | None) -> str:
    """`row 3, field 'colour'` (a named column) or `row 3, value 17` (a row of numbers)."""
    parts = [f"row {row}"] if row is not None else []
    if isinstance(field, int):
        parts.append(f"value {field}")
    elif field is not None:
        parts.append(f"field {escape(field[:60])!r}")
    return ", ".join(parts)


def _row_problem(err: RowError) -> JSONResponse:
    loc: list[Any] = ["body", "rows"] + ([err.row] if err.row is not None else []) + (
        [err.field] if err.field is not None else [])
    where = _where(err.row, err.field)
    return _problem(422, err.kind, loc, f"{where}: {err.message}" if where else err.message)


def _model_problem(err: SpecError) -> JSONResponse:
    """`predict_run`'s refusal of a row, located by its index in this request."""
    problem = err.first
    match = re.search(r"for input row (\d+) ", problem.message)
    if match is None:
        return _problem(422, problem.type, ["body", "rows"], escape(problem.message))
    row = int(match.group(1)) - 1  # predict_run counts rows from 1, JSON arrays from 0
    message = problem.message.replace(match.group(0), "")
    return _problem(422, problem.type, ["body", "rows", row], escape(f"row {row}: {message}"))


def _short(part: Any) -> Any:
    """A `loc` entry as sent back: a client's key is cut to 100 characters and escaped."""
    return escape(part[:100]) if isinstance(part, str) else part


def _pydantic_errors(err: ValidationError, schema: InputSchema) -> list[dict[str, Any]]:
    """pydantic's errors in FastAPI's shape (`loc` under `body`), each message naming its row
    and field; a row's missing fields are one error; the input values are not echoed back."""
    out: list[dict[str, Any]] = []
    missing: dict[int, list[str]] = {}
    names = [f.name for f in schema.features]
    for item in err.errors(include_url=False, include_input=False):
        loc = list(item["loc"])
        row = loc[1] if len(loc) > 1 and loc[0] == "rows" and isinstance(loc[1], int) else None
        field = loc[2] if row is not None and len(loc) > 2 else (
            str(loc[0]) if len(loc) == 1 else None)
        if item["type"] == "missing" and row is not None and len(loc) == 3:
            if row not in missing:
                missing[row] = []
                out.append(_error("missing", ["body", "rows", row], ""))
            missing[row].append(str(loc[2]))
            continue
        msg = escape(item["msg"].replace(" after validation", ""))
        if item["type"] == "json_invalid":
            msg = f"the body is not valid JSON: {msg.removeprefix('Invalid JSON: ')}"
        elif item["type"] == "extra_forbidden" and row is not None:
            close = difflib.get_close_matches(str(loc[-1]), names, 1, 0.7)
            msg = "not a feature of this model" + (
                f"; did you mean {close[0]!r}?" if close else " (GET /schema lists them)")
        where = _where(row, field)
        out.append(_error(item["type"], ["body", *map(_short, loc)],
                          f"{where}: {msg}" if where else msg))
    for error in out:
        if error["type"] == "missing" and not error["msg"]:
            row = error["loc"][2]
            fields = missing[row]
            shown = ", ".join(repr(f) for f in fields[:5]) + (
                f" and {len(fields) - 5} more" if len(fields) > 5 else "")
            hint = " (null for a missing value)" if any(f.nullable for f in schema.features) else ""
            error["msg"] = escape(f"row {row}: missing field{'s' if len(fields) > 1 else ''} "
                                  f"{shown}; every feature needs a value{hint}")
    if len(out) > MAX_ERRORS:
        extra = len(out) - MAX_ERRORS
        out = out[:MAX_ERRORS] + [_error("too_many_errors", ["body"], f"... and {extra} more")]
    return out


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("internal error answering %s %s: %s: %s", request.method, request.url.path,
              type(exc).__name__, exc)
    return _problem(500, "internal_error", [], "internal error in blocks serve (a bug, not your "
                    "request); the server's log has the details")


class BodyLimit:
    """413 for a body over `limit` bytes: from Content-Length before a byte is read, or while
    reading a chunked body (the request is never held in memory beyond the limit)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _problem(400, "bad_request", ["header", "content-length"],
                               "Content-Length is not a number")(scope, receive, send)
                return
            if int(length) > self.limit:
                await self._too_large(scope, receive, send)
                return
        received = 0
        started = False

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge()
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, watched)
        except _TooLarge:
            if not started:
                await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _problem(413, "body_too_large", ["body"], f"the request body is over the server's "
                       f"limit of {self.limit:,} bytes (--max-request-bytes); send fewer rows "
                       "per request")(scope, receive, send)


class _TooLarge(Exception):
    pass


# --- the OpenAPI document ------------------------------------------------------------------------
def _components(schema: InputSchema, adapter: Any) -> dict[str, Any]:
    body = adapter.json_schema(ref_template="#/components/schemas/{model}")
    defs = body.pop("$defs", {})
    return {**defs, "PredictRequest": body, "PredictResponse": schema.response_schema(),
            "Problem": {"type": "object", "properties": {"detail": {"type": "array", "items": {
                "type": "object", "properties": {"type": {"type": "string"},
                                                 "loc": {"type": "array"},
                                                 "msg": {"type": "string"}}}}}}}


def _request_body(schema: InputSchema) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {
        "schema": {"$ref": "#/components/schemas/PredictRequest"}, "example": schema.example()}}
    if schema.kind == "image":
        content["multipart/form-data"] = {"schema": {"type": "object", "required": [IMAGE_FIELD],
                                                     "properties": {IMAGE_FIELD: {
                                                         "type": "array", "items": {
                                                             "type": "string",
                                                             "format": "binary"}}}}}
    return {"requestBody": {"required": True, "content": content}}


def _responses() -> dict[int | str, dict[str, Any]]:
    problem = {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    return {200: {"description": "one prediction per row, in order", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}}},
            413: {"description": "the body is over --max-request-bytes", "content": problem},
            415: {"description": "neither JSON nor (image runs) multipart", "content": problem},
            422: {"description": "a bad row: `loc` and `msg` name the row and field",
                  "content": problem}}


def _description(model: BlocksModel, schema: InputSchema) -> str:
    heads = ", ".join(f"{name} ({info['kind']}: {', '.join(info['labels'][:10])}"
                      f"{' ...' if len(info['labels']) > 10 else ''})"
                      for name, info in schema.heads.items())
    return (f"Predictions of the blocks model `{model.name}` on raw {schema.kind} inputs, with the "
            f"run's own preprocessing. Heads: {heads}. `GET /schema` describes the input.")
