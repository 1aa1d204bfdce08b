"""Build and run the web app: backbone (with the offline fallback), repository, engine, page."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from starlette.middleware import Middleware

from core.backbone import Backbone, WeightsUnavailableError, load_backbone, resolve_device
from core.backbones import default_backbone_name
from engine import ProjectEngine
from storage import Repository
from webapp.api import Api
from webapp.assets import CSS, SHORTCUTS_JS
from webapp.auth import LoginRequired, login_check
from webapp.canvas import module_router
from webapp.config import ServeConfig
from webapp.context import AppContext

log = logging.getLogger(__name__)


def random_banner(backbone: str, fell_back: bool) -> str:
    why = (
        "Pretrained weights could not be loaded (no network and not in the Hugging Face cache), so the "
        "backbone fell back to <b>random weights</b>"
        if fell_back
        else "The backbone runs with <b>random weights</b> (<code>--weights random</code>)"
    )
    # One line (the canvas must stay above the fold); the fix folds out on a click.
    return (
        f"<details><summary>⚠️ <b>Random backbone weights</b>: predictions and clusters are not meaningful "
        f"(click for how to get real weights)</summary>{why}. Either run once with network access: "
        f"<code>python app.py --weights hub</code> (downloads {backbone} into the Hugging Face cache; later runs "
        f"work offline with <code>HF_HUB_OFFLINE=1</code>), or pass a checkpoint file: "
        f"<code>python app.py --weights /path/to/{backbone}_pretrain.pth</code>.</details>"
    )


def load_backbone_with_fallback(config: ServeConfig) -> tuple[Backbone, str]:
    """(backbone, banner markdown). weights=hub falls back to random weights with a loud warning."""
    device = resolve_device(config.device)
    name = config.backbone or default_backbone_name(device.type)
    print(f"probeseg: backbone {name} on {device} (weights: {config.weights})", flush=True)
    try:
        backbone = load_backbone(name, weights=config.weights, device=device)
    except WeightsUnavailableError as exc:
        if config.weights != "hub":
            raise
        bar = "!" * 100
        print(
            f"\n{bar}\nWARNING: {exc}\n\nFALLING BACK TO RANDOM WEIGHTS: the app runs, but its predictions are "
            f"meaningless until you get real weights (see above).\n{bar}\n",
            file=sys.stderr,
            flush=True,
        )
        backbone = load_backbone(name, weights="random", device=device)
        return backbone, random_banner(name, fell_back=True)
    return backbone, (random_banner(name, fell_back=False) if backbone.is_random else "")


def create_context(
    config: ServeConfig,
    repo: Repository | None = None,
    backbone: Backbone | None = None,
    banner: str | None = None,
) -> AppContext:
    """Open the repository and project, load the backbone, start the engine (and queue missing features)."""
    config = config.resolved().validate()
    data = Path(config.data_dir).expanduser()
    data.mkdir(parents=True, exist_ok=True)
    repo = repo or Repository.open(data, config.db_url)
    if backbone is None:
        backbone, banner = load_backbone_with_fallback(config)
    elif banner is None:
        banner = random_banner(backbone.spec.name, fell_back=False) if backbone.is_random else ""
    project = repo.find_project(config.project) or repo.create_project(config.project)
    engine = ProjectEngine.create(repo, backbone, data / "features", config.features)
    queued = engine.ensure_features(project_id=project.id)
    if queued:
        print(f"probeseg: computing features of {queued} image(s) in the background", flush=True)
    return AppContext(
        engine=engine,
        project_id=project.id,
        project_name=project.name,
        banner=banner or "",
        export_dir=str(data / "exports"),
        import_roots=tuple(config.import_roots),
        upload_dir=os.environ.get("GRADIO_TEMP_DIR", ""),
    )


def prepare_upload_dir(data_dir: str | os.PathLike) -> Path:
    """Uploads land in <data>/uploads (not the system temp folder, where they piled up): emptied at
    start-up, and each upload is deleted once imported. Gradio reads GRADIO_TEMP_DIR when it builds the app."""
    folder = Path(data_dir).expanduser().resolve() / "uploads"
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def build_app(config: ServeConfig, ctx: AppContext | None = None):
    """The Gradio Blocks of the app (the context, with its engine, is attached as `.probeseg`)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from webapp.layout import build

    ctx = ctx or create_context(config)
    demo, _ui = build(ctx)
    demo.probeseg = ctx  # type: ignore[attr-defined]
    demo.queue(default_concurrency_limit=8)
    quiet_queue(demo)
    return demo


def quiet_queue(demo) -> None:
    """Gradio's queue polls every 1 ms while it is empty: about 12 % of a core here with nobody connected
    (measured); every 10 ms still cost 1.3 %. Every 50 ms (Gradio's own setting on Windows) costs a queued
    event at most 50 ms: the page's buttons and the side panel's refresh. Edits, predictions and the event
    stream go through the REST API, not the queue."""
    queue = getattr(demo, "_queue", None)
    if queue is not None and hasattr(queue, "sleep_when_free"):
        queue.sleep_when_free = max(queue.sleep_when_free, 0.05)
        queue.progress_update_sleep_when_free = max(queue.progress_update_sleep_when_free, 0.1)


def launch_kwargs(config: ServeConfig, ctx: AppContext) -> dict:
    pair = config.resolved().auth_pair()
    auth = login_check(*pair) if pair else None
    Path(ctx.export_dir).mkdir(parents=True, exist_ok=True)
    return dict(
        server_name=config.host,
        server_port=int(config.port),
        share=bool(config.share),
        auth=auth,
        max_file_size=config.max_file_size,
        ssr_mode=False,
        css=CSS,
        head=SHORTCUTS_JS,
        run_history=False,  # a growing run history slows every queued event down (gradio-notes)
        allowed_paths=[ctx.export_dir],
        footer_links=["settings"],
        quiet=True,
        auth_message="probeseg: log in with the user and password the server was started with."
        if auth
        else None,
        # the REST API's routes come first in the app, before Gradio's own (webapp/api.py)
        app_kwargs={
            "middleware": [Middleware(LoginRequired)],
            "routes": list(Api(ctx, pair).router().routes) + list(module_router().routes),
        },
    )


def limit_heap_fragmentation() -> None:
    """Serve large feature arrays from mmap'd memory that is returned to the OS when freed. Without a fixed
    threshold glibc raises it adaptively and RSS grows by gigabytes over a 1,000-image session
    (bench/RESULTS.md, memory part)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to tune
        pass


def serve(config: ServeConfig) -> None:
    """Start the app and block until interrupted."""
    config = config.resolved().validate()
    limit_heap_fragmentation()
    os.umask(0o077)  # every file the server writes (database, journals, images, exports) is private
    prepare_upload_dir(config.data_dir)
    for noisy in ("httpx", "alembic", "urllib3"):  # keep the console to what the user needs to see
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if config.host not in ("127.0.0.1", "localhost", "::1") and not config.auth:
        print(
            f"WARNING: serving on {config.host} without --auth: anyone who can reach this address can "
            "view and change the project.",
            file=sys.stderr,
            flush=True,
        )
    demo = build_app(config)
    ctx: AppContext = demo.probeseg
    try:
        demo.launch(prevent_thread_lock=True, **launch_kwargs(config, ctx))
        print(
            f"probeseg is running at {config.url}  (project '{ctx.project_name}', data in "
            f"{Path(config.data_dir).expanduser().resolve()}; Ctrl+C stops it)",
            flush=True,
        )
        demo.block_thread()
    finally:
        ctx.engine.close()
