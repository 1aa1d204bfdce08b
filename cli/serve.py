"""`python app.py serve` (also the default command): the web app."""

from __future__ import annotations

import argparse

from cli.commands import help_of
from core.config import RESOLUTION_HELP
from webapp.config import ServeConfig


def register(subparsers) -> argparse.ArgumentParser:
    d = ServeConfig()
    p = subparsers.add_parser(
        "serve",
        help=help_of("serve"),
        description="Start the web app: annotate in the browser, retrain in about a second, see live predictions.",
    )
    p.add_argument(
        "--host",
        default=d.host,
        help=f"address to bind (default {d.host}; 0.0.0.0 exposes it to the network)",
    )
    p.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port})")
    p.add_argument(
        "--data-dir", default=d.data_dir, help=f"where images, labels and caches live (default {d.data_dir})"
    )
    p.add_argument(
        "--db",
        default=None,
        help="SQLAlchemy database URL (default: env DATABASE_URL, else SQLite in --data-dir)",
    )
    p.add_argument(
        "--backbone",
        default=None,
        help="backbone of any family: dinov2_*, dino_*, ibot_*, dinov3_* (default: dinov2_vitb14 with a GPU, "
        "dinov2_vits14 on CPU)",
    )
    p.add_argument(
        "--weights",
        default=d.weights,
        help="hub (default; falls back to random with a warning when offline), random, or a checkpoint path",
    )
    p.add_argument("--device", default=d.device, help="auto (default), cpu, cuda, cuda:1, mps")
    p.add_argument(
        "--resolution", "--long-side", dest="resolution", default=d.resolution, help=RESOLUTION_HELP
    )
    p.add_argument(
        "--auth",
        default=None,
        help="user:password to require a login; visible to other local users in the process list, so "
        "prefer --auth-file or env PROBESEG_AUTH",
    )
    p.add_argument(
        "--auth-file",
        default=None,
        help="file whose first line is user:password (must be private: chmod 600)",
    )
    p.add_argument(
        "--import-root",
        action="append",
        default=[],
        metavar="DIR",
        help="allow the page to import folders inside DIR on the server (repeatable; off by default); "
        "nothing outside these folders is ever read",
    )
    p.add_argument("--project", default=d.project, help=f"project to open or create (default {d.project!r})")
    p.add_argument(
        "--share", action="store_true", help="also create a public gradio.live link (off by default)"
    )
    p.set_defaults(func=run)
    return p


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    auth = args.auth
    if getattr(args, "auth_file", None):
        from webapp.auth import read_auth_file

        auth = read_auth_file(args.auth_file)
    return (
        ServeConfig(
            host=args.host,
            port=args.port,
            data_dir=args.data_dir,
            db_url=args.db,
            backbone=args.backbone,
            weights=args.weights,
            device=args.device,
            resolution=args.resolution,
            auth=auth,
            project=args.project,
            share=bool(getattr(args, "share", False)),
            import_roots=tuple(getattr(args, "import_root", None) or ()),
        )
        .resolved()
        .validate()
    )


def run(args: argparse.Namespace) -> int:
    from webapp.server import serve

    serve(config_from_args(args))
    return 0
