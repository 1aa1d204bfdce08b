"""The app as the benchmarks start it: `python app.py serve --weights random ...` in its own process,
on a free 127.0.0.1 port, stopped by its pid only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.config import BenchConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


class ApiUnavailable(RuntimeError):
    """The app's API lacks something this benchmark needs (named in the message)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _reachable(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status < 500
    except OSError:
        return False


class AppProcess:
    """The app started by the bench, in its own process; stopped by its pid only."""

    def __init__(self, cfg: BenchConfig, data_dir: Path, resolution: str | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = data_dir.parent / "app.log"
        cmd = [
            sys.executable,
            "app.py",
            "serve",
            "--weights",
            "random",
            "--backbone",
            cfg.backbone,
            "--port",
            str(self.port),
            "--data-dir",
            str(data_dir),
            "--resolution",
            resolution or str(cfg.long_side),
        ]
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.command = " ".join(cmd[1:])

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ApiUnavailable(f"the app exited with code {self.proc.returncode}: {self.tail()}")
            if _reachable(self.url):
                return
            time.sleep(0.5)
        raise ApiUnavailable(f"the app did not answer on {self.url} within {timeout_s:.0f} s: {self.tail()}")

    def tail(self, n: int = 400) -> str:
        try:
            return self.log_path.read_text()[-n:].strip().replace("\n", " | ")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
