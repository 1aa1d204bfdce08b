"""The REST API beside the page, under /api/v1/projects/{project} ({project} is the project's name).

The canvas uses it too. With a login configured every route needs it: the page's session cookie, or
HTTP Basic (user:password) for scripts. Writes must be JSON (or, for uploads, carry the header
`X-Requested-With`), which a cross-site form cannot send, so another web page cannot edit through a
logged-in browser. Errors are JSON `{"detail": message}` with a 4xx status for anything the request got
wrong; a 5xx only when the server itself failed (a read-only or unreachable database: retry later).

Routes (README "REST API" has examples):
  GET  /classes                     [{"id", "name", "color", "index"}]
  POST /classes                     {"name", "color"?} -> the new class (201)
  GET  /images                      [{"id", "name", "width", "height", "labelled_pixels", "label_version"}]
  POST /images                      multipart `files` (images or zips) -> {"imported": [...], "rejected": [...]}
  GET  /features                    background feature extraction: done, total, images/s, seconds left
  GET  /resolution                  {"resolution", "description", "default"}: image pixels per token
  PUT  /resolution                  {"resolution": "auto" | "16px" | "448" | null}: features recomputed, retrain
  GET  /images/{id}/file            the image upright: the stored JPEG or PNG as it is, else a JPEG with the
                                    EXIF orientation applied; ?side=1536: a JPEG at most that size
  POST /images/{id}/ops             one edit operation (storage.ops) -> {"op_id", "seq", "duplicate", ...};
                                    ?train=false: do not retrain after it
  POST /images/{id}/refine          {"threshold", "classes"?, "client"?}: confident predictions become labels
                                    -> {"added", "label_version"}
  GET  /images/{id}/labels          8-bit PNG of class indices, 255 = unlabelled (ETag: label version);
                                    ?mode=gray: a greyscale PNG (grey value = index) instead of a palette
  GET  /images/{id}/points          [{"id", "x", "y", "radius", "class_id", "index"}]
  GET  /images/{id}/prediction      patch-grid class scores (see `prediction_json`); ?after=VERSION&wait=S
                                    waits up to S seconds (max 25) for a head other than VERSION (204 if none)
  POST /import                      multipart `file`: a project archive or VOC zip becomes the new project
                                    {project} (409 if the name is taken)
  GET  /export                      ?format=archive|voc|coco[&predictions=true]: the project as a download,
                                    written to a temporary file that is deleted once sent
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hmac
import io
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import FileResponse, StreamingResponse
from PIL import Image
from sqlalchemy.exc import SQLAlchemyError
from starlette.background import BackgroundTask

from core.errors import UserError
from core.labels import label_to_png_bytes
from engine import EXPORT_FORMATS
from engine.results import EdgeLayer, GridScores
from storage import ConflictError, DatabaseBusyError, LabelDelta, NotFoundError, PointInfo, ValidationError
from webapp.auth import Backoff, logged_in
from webapp.context import AppContext

log = logging.getLogger(__name__)

PREFIX = "/api/v1/projects/{project}"
MAX_OP_BYTES = 1_000_000  # one operation (10,000 points fit easily)
MAX_WAIT_S = 25.0


SCORE_TYPES = {"float32": "<f4", "float16": "<f2"}  # ?dtype=: float16 halves the bytes (the canvas's choice)


def prediction_json(scores: GridScores, label_version: int, dtype: str = "float32") -> dict[str, Any]:
    """The prediction as it travels: the head's class scores on the patch grid, little-endian `dtype`
    (float32, or float16 when asked for: half the bytes, argmax ties aside the same), base64, shape [K, h, w]
    (channel-major). `classes[k]` is the class index of channel k (null: deleted).
    The client upsamples them to `size` with bilinear interpolation (align_corners=False) and takes the
    argmax, as `core.predict` does without the image; the boundary rule's layer follows on its own route
    (`edge_json`)."""
    k, h, w = scores.logits.shape
    return {
        "head_id": scores.head_id,
        "version": scores.counter,
        "interim": scores.interim,
        "generation": scores.generation,
        "grid": [h, w],
        "size": list(scores.image_size),
        "channels": k,
        "classes": list(scores.channel_index),
        "dtype": dtype,
        "label_version": label_version,
        "logits": base64.b64encode(np.ascontiguousarray(scores.logits, SCORE_TYPES[dtype]).tobytes()).decode(
            "ascii"
        ),
    }


def edge_json(layer: EdgeLayer) -> dict[str, Any]:
    """The boundary rule's layer as it travels: each pixel's class channel (as in `prediction_json`) at the
    asked size, a grayscale PNG in base64 (what `core.predict` gives at that size; 5 to 30 KB)."""
    return {
        "head_id": layer.head_id,
        "version": layer.counter,
        "size": list(layer.channels.shape),
        "png": gray_png(layer.channels),
    }


def delta_json(delta: LabelDelta) -> dict[str, Any]:
    """An edit's change of the label map: its box [x0, y0, x1, y1) and the labels inside it after the edit,
    a grayscale PNG in base64 (the grey value is the class index, 255 unlabelled)."""
    return {"box": list(delta.box), "png": gray_png(delta.labels)}


def gray_png(values: np.ndarray) -> str:
    """A uint8 map as a greyscale PNG in base64 (fast compression: it travels once)."""
    png = io.BytesIO()
    Image.fromarray(values, "L").save(png, format="PNG", compress_level=1)
    return base64.b64encode(png.getvalue()).decode("ascii")


def point_json(p: PointInfo) -> dict[str, Any]:
    return {
        "id": p.annotation_id,
        "x": p.x,
        "y": p.y,
        "radius": p.radius,
        "class_id": p.class_id,
        "index": p.class_index,
    }


MAX_LAYER_SIDE = 2048  # the largest size `/edges` computes (a display, not an export)


def _layer_size(text: str, image: tuple[int, int]) -> tuple[int, int]:
    """`?size=HxW`: a size no larger than the image nor MAX_LAYER_SIDE, else 422 saying what fits."""
    h, sep, w = text.partition("x")
    if sep and h.isdigit() and w.isdigit():
        size = (int(h), int(w))
        if all(1 <= v <= min(lim, MAX_LAYER_SIDE) for v, lim in zip(size, image, strict=True)):
            return size
    raise HTTPException(
        422,
        f"size must be HEIGHTxWIDTH within the image ({image[0]}x{image[1]}) and at most {MAX_LAYER_SIDE} a "
        f"side, e.g. size={min(image[0], MAX_LAYER_SIDE)}x{min(image[1], MAX_LAYER_SIDE)}; got {text!r}"[
            :300
        ],
    )


def safe_stem(name: str) -> str:
    """A file-name stem from a project name (letters, digits, - and _ kept)."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "project"


def class_json(c) -> dict[str, Any]:
    return {"id": c.id, "name": c.name, "color": c.colour, "index": c.index}


def _maybe_gzip(request: Request, body: bytes, headers: dict[str, str]) -> Response:
    """JSON, gzipped for a client that accepts it (base64 scores shrink by about a quarter: a prediction is
    sent after every stroke)."""
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        body = gzip.compress(body, compresslevel=5)
        headers = headers | {"Content-Encoding": "gzip", "Vary": "Accept-Encoding"}
    return Response(body, media_type="application/json", headers=headers)


def _status_of(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, NotFoundError):
        return 404, str(exc)
    if isinstance(exc, ConflictError):
        return 409, str(exc)
    if isinstance(exc, DatabaseBusyError):
        return 503, str(exc)
    if isinstance(exc, UserError):
        return 422 if isinstance(exc, ValidationError) else 400, str(exc)
    if isinstance(exc, SQLAlchemyError):
        log.exception("database error in the API")
        return 503, "the server could not reach or write its database (read-only or unavailable); retry later"
    log.exception("internal error in the API")
    return 500, "internal error (the details are in the server log); nothing was changed by this request"


def _guard(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except HTTPException:
        raise
    except Exception as exc:
        status, message = _status_of(exc)
        raise HTTPException(status, message) from None


class Api:
    """Builds the router over one shared app context; `auth` is the (user, password) pair or None."""

    def __init__(self, ctx: AppContext, auth: tuple[str, str] | None) -> None:
        self.ctx, self.auth = ctx, auth
        self.backoff = Backoff("from %s (HTTP Basic)")

    # ------------------------------------------------------------------ helpers
    async def check_login(self, request: Request) -> None:
        if self.auth is None:
            return
        if logged_in(request.scope, request.app):
            return
        header = request.headers.get("authorization", "")
        client = request.client.host if request.client else "?"
        if header.lower().startswith("basic "):
            await self.backoff.wait(client)
            try:
                user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                user, password = "", ""
            ok = hmac.compare_digest(user.encode(), self.auth[0].encode()) & hmac.compare_digest(
                password.encode(), self.auth[1].encode()
            )
            self.backoff.record(client, ok)
            if ok:
                return
        raise HTTPException(
            401,
            "log in: use the page's login, or HTTP Basic with the server's user and password",
            headers={"WWW-Authenticate": 'Basic realm="probeseg"'},
        )

    def project_id(self, name: str) -> int:
        if name == self.ctx.project_name:
            return self.ctx.project_id
        p = self.ctx.records.find_project(name)
        if p is None:
            raise HTTPException(
                404,
                f"no project named {name[:100]!r}; GET a project the server has "
                f"(this one serves {self.ctx.project_name!r})",
            )
        return p.id

    def image(self, project: str, image_id: int):
        pid = self.project_id(project)
        info = _guard(lambda: self.ctx.records.get_image(image_id))
        if info.project_id != pid:
            raise HTTPException(
                404, f"image {image_id} is not in project {project[:100]!r}; GET /images lists them"
            )
        return pid, info

    @staticmethod
    async def json_body(request: Request) -> Any:
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise HTTPException(415, "send the body as JSON with Content-Type: application/json")
        body = await request.body()
        if len(body) > MAX_OP_BYTES:
            raise HTTPException(
                413, f"the request body is larger than {MAX_OP_BYTES:,} bytes; split the stroke"
            )
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise HTTPException(400, "the body is not valid JSON") from None

    # ------------------------------------------------------------------ routes
    def router(self) -> APIRouter:
        r = APIRouter(prefix=PREFIX, dependencies=[Depends(self.check_login)])
        self._class_routes(r)
        self._image_routes(r)
        self._resolution_routes(r)
        self._label_routes(r)
        self._prediction_route(r)
        self._event_route(r)
        self._export_route(r)
        return r

    def _event_route(self, r: APIRouter) -> None:
        ctx = self.ctx

        @r.get("/events")
        async def get_events(
            project: str, request: Request, after: int | None = None, wait: float = MAX_WAIT_S
        ) -> StreamingResponse:
            """The project's event stream (engine/events.py) as server-sent events, for `wait` seconds (at
            most 25), then the stream ends and a browser's EventSource reconnects with Last-Event-ID."""
            pid = await asyncio.to_thread(self.project_id, project)
            bus = ctx.engine.events
            resume = request.headers.get("last-event-id", "")
            start = after if after is not None else int(resume) if resume.isdigit() else bus.last
            window = min(max(0.0, float(wait)), MAX_WAIT_S)

            async def stream():
                yield "retry: 1000\n\n"  # (the browser reconnects a second after the stream ends)
                last, deadline = start, time.monotonic() + window
                while (left := deadline - time.monotonic()) > 0:
                    events = await bus.wait(pid, last, min(left, 15.0))
                    if not events:
                        yield ": idle\n\n"  # a comment: keeps proxies from closing a quiet stream
                    for event in events:
                        yield event.sse()
                        last = max(last, event.seq)

            return StreamingResponse(
                stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
            )

    def _export_route(self, r: APIRouter) -> None:
        ctx = self.ctx

        @r.post("/import", status_code=201)
        async def post_import(project: str, request: Request, zero_is_unlabelled: bool = False) -> dict:
            """A new project named {project} from a probeseg project archive or a VOC-layout zip."""
            if not request.headers.get("x-requested-with"):
                raise HTTPException(400, "uploads need the header X-Requested-With (any value)")
            if not request.headers.get("content-type", "").startswith("multipart/form-data"):
                raise HTTPException(415, "send the archive as multipart/form-data in the field `file`")
            form = await request.form()
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise HTTPException(
                    422, "no archive: send a project archive or a VOC zip in the field `file`"
                )
            root = Path(ctx.export_dir or tempfile.gettempdir())
            root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="import-", dir=root) as tmp:
                path = Path(tmp) / "upload.zip"
                with open(path, "wb") as out:  # streamed to disk: an archive can be gigabytes
                    while chunk := await upload.read(2**20):
                        out.write(chunk)
                info, report = await asyncio.to_thread(
                    _guard, lambda: ctx.engine.import_bundle(path, project, None, zero_is_unlabelled)
                )
            info = await asyncio.to_thread(
                _guard, lambda: ctx.records.get_project(info.id)
            )  # with its counts
            return {
                "project": info.name,
                "id": info.id,
                "images": info.image_count,
                "classes": info.class_count,
                "rejected": [{"name": n, "reason": why} for n, why in report.failed] if report else [],
            }

        @r.get("/export")
        async def get_export(project: str, format: str = "archive", predictions: bool = False) -> Response:
            pid = self.project_id(project)
            if format not in EXPORT_FORMATS:
                raise HTTPException(422, f"format must be one of {', '.join(EXPORT_FORMATS)}")
            root = Path(ctx.export_dir or tempfile.gettempdir())
            root.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix="export-", dir=root))
            what = "predictions" if predictions else ("project" if format == "archive" else "labels")
            name = f"{safe_stem(project)}-{what}-{format}.{'json' if format == 'coco' else 'zip'}"
            try:
                path, _missing = await asyncio.to_thread(
                    _guard, lambda: ctx.engine.export(pid, format, folder / name, predictions)
                )
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            # streamed from the file, which goes with its folder once sent: no copy is left behind
            return FileResponse(
                path,
                filename=name,
                media_type="application/json" if format == "coco" else "application/zip",
                background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
            )

    def _class_routes(self, r: APIRouter) -> None:
        ctx = self.ctx

        @r.get("/classes")
        def get_classes(project: str) -> list[dict]:
            pid = self.project_id(project)
            return [class_json(c) for c in _guard(lambda: ctx.records.list_classes(pid))]

        @r.post("/classes", status_code=201)
        async def post_class(project: str, request: Request) -> dict:
            pid = self.project_id(project)
            body = await self.json_body(request)
            if not isinstance(body, dict) or not isinstance(body.get("name"), str):
                raise HTTPException(422, 'send {"name": "...", "color": "#rrggbb" (optional)}')
            colour = body.get("color")
            if colour is not None and not isinstance(colour, str):
                raise HTTPException(422, "color must be a string like #rrggbb")
            return class_json(
                await asyncio.to_thread(_guard, lambda: ctx.engine.add_class(pid, body["name"], colour))
            )

    def _image_routes(self, r: APIRouter) -> None:
        ctx = self.ctx

        @r.get("/images")
        def get_images(project: str) -> list[dict]:
            pid = self.project_id(project)
            return [
                {
                    "id": i.id,
                    "name": i.name,
                    "width": i.width,
                    "height": i.height,
                    "labelled_pixels": i.labelled_pixels,
                    "label_version": i.label_version,
                }
                for i in _guard(lambda: ctx.records.list_images(pid))
            ]

        @r.post("/images")
        async def post_images(project: str, request: Request) -> dict:
            pid = self.project_id(project)
            if not request.headers.get("x-requested-with"):
                raise HTTPException(
                    400,
                    "uploads need the header X-Requested-With (any value); it keeps other "
                    "web sites from uploading through your browser",
                )
            if not request.headers.get("content-type", "").startswith("multipart/form-data"):
                raise HTTPException(415, "send the images as multipart/form-data in the field `files`")
            form = await request.form()
            files = []
            for f in form.getlist("files"):
                if isinstance(f, str):
                    raise HTTPException(422, "the field `files` must carry files, not text")
                files.append((f.filename or "upload", await f.read()))
            if not files:
                raise HTTPException(422, "no files: send one or more in the multipart field `files`")

            def store():  # in a thread: an import must not stall the event loop
                report = _guard(lambda: ctx.engine.import_uploads(pid, files))
                return report, [_guard(lambda i=i: ctx.records.get_image(i)) for i in report.image_ids]

            report, infos = await asyncio.to_thread(store)
            return {
                "imported": [
                    {"id": i.id, "name": i.name, "width": i.width, "height": i.height} for i in infos
                ],
                "duplicates": list(report.duplicates),
                "rejected": [{"name": n, "reason": why} for n, why in report.failed],
            }

        @r.get("/features")
        def get_features(project: str) -> dict:
            self.project_id(project)
            prog = ctx.engine.feature_progress()
            return {
                "done": prog.done,
                "total": prog.total,
                "busy": prog.busy,
                "images_per_s": prog.rate,
                "seconds_left": prog.seconds_left,
                "failed": [{"id": i, "reason": why} for i, why in prog.failed],
            }

        @r.get("/images/{image_id}/file")
        def get_file(project: str, image_id: int, request: Request, side: int | None = None) -> Response:
            _pid, info = self.image(project, image_id)
            smaller = side is not None and max(info.width, info.height) > side
            etag = f'"{info.pixel_hash or info.content_hash}{f"-{side}" if smaller else ""}"'
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers={"ETag": etag})
            if side is not None and smaller:
                limit = int(side)
                path, media = _guard(lambda: ctx.engine.thumbnail_path(image_id, limit)), "image/jpeg"
            else:
                path, media = _guard(lambda: ctx.records.display_file(image_id))
            return FileResponse(
                path, media_type=media, headers={"ETag": etag, "Cache-Control": "private, max-age=86400"}
            )

    def _resolution_routes(self, r: APIRouter) -> None:
        ctx = self.ctx

        def resolution_json(pid: int) -> dict:
            cfg = ctx.engine.project_config(pid)
            default = ctx.engine.feature_config.resolution
            return {"resolution": cfg.resolution, "description": cfg.describe(), "default": default}

        @r.get("/resolution")
        def get_resolution(project: str) -> dict:
            return resolution_json(self.project_id(project))

        @r.put("/resolution")
        async def put_resolution(project: str, request: Request) -> dict:
            """The project's resolution (null: the server's): its features are recomputed in the background
            (GET /features) and the head retrains; labels are untouched."""
            body = await self.json_body(request)
            value = body.get("resolution", 0) if isinstance(body, dict) else 0
            if not (value is None or isinstance(value, str)):
                raise HTTPException(422, 'send {"resolution": "auto" | "16px" | "448" | null}')

            def run() -> dict:
                pid = self.project_id(project)
                ctx.engine.set_resolution(pid, value)
                return resolution_json(pid)

            return await asyncio.to_thread(_guard, run)

    def _label_routes(self, r: APIRouter) -> None:
        ctx = self.ctx

        @r.post("/images/{image_id}/refine")
        async def post_refine(project: str, image_id: int, request: Request) -> dict:
            """Confident predictions become labels where the image has none (engine.refine); the same
            client's undo takes them back."""
            body = await self.json_body(request)
            if not isinstance(body, dict) or not isinstance(body.get("threshold"), int | float):
                raise HTTPException(422, 'send {"threshold": 0..1, "classes": [class ids] or null, "client"}')
            classes = body.get("classes")
            if classes is not None and not (
                isinstance(classes, list)
                and all(isinstance(c, int) and not isinstance(c, bool) for c in classes)
            ):
                raise HTTPException(422, "classes must be a list of class ids (GET /classes) or null for all")

            def run() -> tuple[int, int]:
                pid, _info = self.image(project, image_id)
                added = _guard(
                    lambda: ctx.engine.refine(
                        pid,
                        image_id,
                        float(body["threshold"]),
                        classes,
                        self.author(request),
                        body.get("client"),
                    )
                )
                return added, _guard(lambda: ctx.records.get_image(image_id)).label_version

            added, version = await asyncio.to_thread(run)
            return {"added": added, "label_version": version}

        @r.post("/images/{image_id}/ops")
        async def post_op(project: str, image_id: int, request: Request, train: bool = True) -> dict:
            body = await self.json_body(request)

            def commit():
                pid, _info = self.image(project, image_id)
                return _guard(
                    lambda: ctx.engine.apply_op(pid, image_id, body, self.author(request), train=train)
                )

            res, gen = await asyncio.to_thread(commit)
            out = {
                "op_id": res.op_id,
                "seq": res.seq,
                "duplicate": res.duplicate,
                "applied": res.applied,
                "label_version": res.label_version,
                "train_generation": gen,
            }
            if res.delta is not None:  # (undo, redo, clear, erase, unpoint: the client cannot draw them)
                points = await asyncio.to_thread(_guard, lambda: ctx.records.points(image_id))
                out |= {"delta": delta_json(res.delta), "points": [point_json(p) for p in points]}
            return out

        @r.get("/images/{image_id}/labels")
        def get_labels(project: str, image_id: int, request: Request, mode: str = "palette") -> Response:
            if mode not in ("palette", "gray"):
                raise HTTPException(
                    422,
                    "mode must be palette (indices with a colour table, the default) or "
                    "gray (the grey value is the index, for browsers: they decode palettes to colours)",
                )
            _pid, info = self.image(project, image_id)
            etag = f'"labels-{info.id}-{info.label_version}-{mode}"'
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers={"ETag": etag})
            labels = _guard(lambda: ctx.records.label_map(image_id))
            if mode == "gray":
                buf = io.BytesIO()
                # 2-D uint8: greyscale; fast compression (for the page, on loopback or a LAN: half the time)
                Image.fromarray(labels).save(buf, format="PNG", compress_level=1)
                png = buf.getvalue()
            else:
                png = label_to_png_bytes(labels)
            return Response(
                png,
                media_type="image/png",
                headers={
                    "ETag": etag,
                    "Cache-Control": "no-cache",
                    "X-Label-Version": str(info.label_version),
                },
            )

        @r.get("/images/{image_id}/points")
        def get_points(project: str, image_id: int) -> list[dict]:
            self.image(project, image_id)
            return [point_json(p) for p in _guard(lambda: ctx.records.points(image_id))]

    def _prediction_route(self, r: APIRouter) -> None:
        ctx = self.ctx

        @r.get("/images/{image_id}/prediction")
        async def get_prediction(
            project: str,
            image_id: int,
            request: Request,
            after: int | None = None,
            wait: float = 0.0,
            dtype: str = "float32",
        ) -> Response:
            if dtype not in SCORE_TYPES:
                raise HTTPException(422, f"dtype must be one of {', '.join(SCORE_TYPES)}; got {dtype[:40]!r}")
            pid, _info = await asyncio.to_thread(self.image, project, image_id)
            deadline = time.monotonic() + min(max(0.0, float(wait)), MAX_WAIT_S)
            tried: tuple[int | None, float] = (None, 0.0)  # head counter last tried, and when
            checked = time.monotonic()
            seen = ctx.engine.events.last  # the project's event stream: a new head wakes the wait below
            while True:
                counter = ctx.engine.head_counter(pid)
                now = time.monotonic()
                # a new head, or (features were not ready) half a second later: try to score the image
                if counter != after and (counter != tried[0] or now - tried[1] > 0.5):
                    tried = (counter, now)
                    scores = await asyncio.to_thread(_guard, lambda: ctx.engine.grid_scores(pid, image_id))
                    if scores is not None:
                        version = (await asyncio.to_thread(ctx.records.get_image, image_id)).label_version
                        body = json.dumps(prediction_json(scores, version, dtype)).encode()
                        return _maybe_gzip(request, body, {"Cache-Control": "no-store"})
                if now >= deadline:
                    return Response(status_code=204)
                if now - checked > 0.5:  # a closed tab stops waiting (checked rarely: it costs a receive)
                    checked = now
                    if await request.is_disconnected():
                        return Response(status_code=204)
                events = await ctx.engine.events.wait(pid, seen, min(0.5, deadline - now))
                seen = max([seen] + [e.seq for e in events])

        @r.get("/images/{image_id}/edges")
        async def get_edges(project: str, image_id: int, request: Request, size: str) -> Response:
            """The final head's boundary-rule layer of the image at `size` (the canvas asks after drawing
            the grid scores); 204 while there is no final head yet."""
            pid, info = await asyncio.to_thread(self.image, project, image_id)
            shape = _layer_size(size, (info.height, info.width))
            layer = await asyncio.to_thread(_guard, lambda: ctx.engine.edge_layer(pid, image_id, shape))
            if layer is None:
                return Response(status_code=204)
            body = json.dumps(edge_json(layer)).encode()
            return _maybe_gzip(request, body, {"Cache-Control": "no-store"})

    @staticmethod
    def author(request: Request) -> str:
        return (request.headers.get("x-probeseg-author") or "api")[:100]
