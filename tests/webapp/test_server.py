"""Configuration, the serve subcommand, the weights fallback banner, and the app served over HTTP."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request

import gradio as gr
import pytest

import webapp.server as server
from cli import serve as cli_serve
from core.backbone import WeightsUnavailableError
from tests.webapp.browser_support import free_port
from webapp.config import ServeConfig


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_serve.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["serve", *argv])


def test_defaults_flags_and_environment(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("PROBESEG_AUTH", raising=False)
    cfg = cli_serve.config_from_args(parse())
    assert (cfg.host, cfg.port, cfg.weights, cfg.project, cfg.share) == (
        "127.0.0.1",
        7860,
        "hub",
        "default",
        False,
    )
    assert cfg.db_url is None and cfg.auth_pair() is None and cfg.url == "http://127.0.0.1:7860"
    monkeypatch.setenv("DATABASE_URL", "sqlite:////tmp/x.db")
    monkeypatch.setenv("PROBESEG_AUTH", "ann:secret")
    cfg = cli_serve.config_from_args(
        parse(
            "--host",
            "0.0.0.0",
            "--port",
            "9000",
            "--weights",
            "random",
            "--long-side",
            "224",
            "--project",
            "cells",
        )
    )
    assert cfg.db_url == "sqlite:////tmp/x.db" and cfg.auth_pair() == ("ann", "secret")
    assert (cfg.host, cfg.port, cfg.resolution, cfg.project) == ("0.0.0.0", 9000, "224", "cells")
    assert cfg.features.long_side == 224 and cfg.features.scale is None  # --long-side N: --resolution N
    assert parse().func is cli_serve.run
    with pytest.raises(ValueError, match="user:password"):
        ServeConfig(auth="nopassword").validate()
    with pytest.raises(ValueError, match="resolution 'huge' not understood: use 'auto'"):
        ServeConfig(resolution="huge").validate()
    with pytest.raises(ValueError, match="port"):
        ServeConfig(port=0).validate()


def test_hub_failure_falls_back_to_random_weights_with_a_banner(monkeypatch, random_backbone, capsys):
    calls = []

    def fake_load(name, weights="hub", device="auto"):
        calls.append(weights)
        if weights == "hub":
            raise WeightsUnavailableError("could not load pretrained dinov2_vits14 weights (offline)")
        return random_backbone

    monkeypatch.setattr(server, "load_backbone", fake_load)
    backbone, banner = server.load_backbone_with_fallback(ServeConfig(device="cpu"))
    assert calls == ["hub", "random"] and backbone.is_random
    assert "fell back" in banner and "--weights hub" in banner and "_pretrain.pth" in banner
    assert "FALLING BACK TO RANDOM WEIGHTS" in capsys.readouterr().err
    _, banner = server.load_backbone_with_fallback(ServeConfig(device="cpu", weights="random"))
    assert "fell back" not in banner and "--weights random" in banner
    monkeypatch.setattr(
        server, "load_backbone", lambda *a, **k: (_ for _ in ()).throw(WeightsUnavailableError("bad file"))
    )
    with pytest.raises(WeightsUnavailableError):
        server.load_backbone_with_fallback(ServeConfig(device="cpu", weights="/nope.pth"))


def test_app_is_served_with_login(tmp_path, random_backbone):
    cfg = ServeConfig(
        port=free_port(),
        data_dir=str(tmp_path / "data"),
        weights="random",
        resolution="112",
        auth="ann:secret",
    )
    ctx = server.create_context(cfg, backbone=random_backbone)
    demo = server.build_app(cfg, ctx)
    assert isinstance(demo, gr.Blocks) and demo.probeseg is ctx
    try:
        demo.launch(prevent_thread_lock=True, **server.launch_kwargs(cfg, ctx))
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{cfg.url}/config", timeout=10)
        assert err.value.code == 401
        reset = (
            f"{cfg.url}/gradio_api/reset",
            json.dumps({"event_id": "x"}).encode(),
            {"Content-Type": "application/json"},
        )
        for path in ("/gradio_api/heartbeat/x", None):  # routes Gradio itself leaves open
            req = (
                urllib.request.Request(*reset) if path is None else urllib.request.Request(f"{cfg.url}{path}")
            )
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=10)
            assert err.value.code == 401
        body = urllib.parse.urlencode({"username": "ann", "password": "secret"}).encode()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        opener.open(f"{cfg.url}/login", data=body, timeout=10)
        assert opener.open(urllib.request.Request(*reset), timeout=10).status == 200  # logged in: allowed
        config = json.loads(opener.open(f"{cfg.url}/config", timeout=10).read())
        assert "probeseg" in config.get("title", "")
        assert "Random backbone weights" in json.dumps(config)  # the banner is in the page
    finally:
        demo.close()
        ctx.engine.close()
