"""Server settings: one frozen dataclass, filled from command-line flags and environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from core.config import FeatureConfig
from core.errors import InputError


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # binding elsewhere (0.0.0.0) must be asked for explicitly
    port: int = 7860
    data_dir: str = "./probeseg-data"
    db_url: str | None = None  # None: env DATABASE_URL, else SQLite inside data_dir
    backbone: str | None = None  # None: ViT-B/14 with a GPU, ViT-S/14 on a CPU
    weights: str = "hub"  # hub | random | path to a checkpoint
    device: str = "auto"
    resolution: str = "auto"  # core.config.FeatureConfig.parse: "auto", "16px" or a long side like "448"
    auth: str | None = None  # "user:password"; None: env PROBESEG_AUTH, else no login
    project: str = "default"
    share: bool = False
    max_file_size: str | int | None = "200mb"  # per uploaded file
    import_roots: tuple[str, ...] = ()  # folders on the server the UI may import from; () = folder import off

    def resolved(self) -> ServeConfig:
        """Fill the values that come from the environment."""
        return replace(
            self,
            db_url=self.db_url or os.environ.get("DATABASE_URL") or None,
            auth=self.auth or os.environ.get("PROBESEG_AUTH") or None,
        )

    def auth_pair(self) -> tuple[str, str] | None:
        """('user', 'password') or None; raises ValueError on a malformed value."""
        if not self.auth:
            return None
        user, sep, password = self.auth.partition(":")
        if not sep or not user or not password:
            raise InputError("--auth (or PROBESEG_AUTH) must look like user:password")
        return user, password

    def validate(self) -> ServeConfig:
        if not 0 < int(self.port) < 65536:
            raise InputError(f"--port must be within 1..65535, got {self.port}")
        self.features  # noqa: B018 (an unreadable --resolution is refused here, with what to write)
        if not self.project.strip():
            raise InputError("--project must not be empty")
        self.auth_pair()
        return self

    @property
    def features(self) -> FeatureConfig:
        return FeatureConfig.parse(self.resolution)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"
