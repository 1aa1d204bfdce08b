"""`python app.py`: help, version and mistyped commands answer without loading torch or gradio."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cli.commands import COMMANDS
from cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _run_fresh(argv: list[str]) -> tuple[int, str, set[str]]:
    """main(argv) in a new interpreter: exit code, output, and which heavy modules it imported."""
    code = (
        "import sys, contextlib, io\nfrom cli.main import main\nout = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):\n"
        f"    rc = main({argv!r})\n"
        "print(rc); print(out.getvalue()); print(sorted(m for m in ('torch', 'gradio', 'timm', 'sqlalchemy') "
        "if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = res.stdout.strip().splitlines()
    return int(lines[0]), "\n".join(lines[1:-1]), set(eval(lines[-1]))  # noqa: S307 (our own list literal)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["trian"], *([c, "--help"] for c in COMMANDS)])
def test_help_version_and_typos_load_neither_torch_nor_gradio(argv):
    rc, out, heavy = _run_fresh(argv)
    assert heavy == set(), heavy
    if argv[-1] == "--help" and len(argv) == 2:
        assert f"usage: python app.py {argv[0]}" in out and "options:" in out
    if argv == ["trian"]:
        assert rc == 2 and "invalid choice: 'trian'" in out and "did you mean 'train'?" in out
    else:
        assert rc == 0
    if argv == ["--help"]:
        assert all(name in out for name in COMMANDS) and "Exit status" in out
    if argv == ["--version"]:
        version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
        assert out.strip() == f"probeseg {version}"


def test_every_command_parses_with_its_module_and_has_help_on_every_option():
    for name in COMMANDS:
        parser = build_parser(name)
        sub = parser._subparsers._group_actions[0].choices[name]
        assert sub.format_help()
        missing = [a.option_strings for a in sub._actions if not a.help]
        assert missing == [], (name, missing)


def test_a_usage_error_exits_2_and_a_failure_1(tmp_path, capsys):
    assert main(["serve", "--port", "notanumber"]) == 2
    assert "invalid int value" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(tmp_path / "nope"), "--head", str(tmp_path / "nohead")]) == 1


def test_the_wheel_holds_every_package_its_data_and_the_probeseg_command(tmp_path):
    """`pip install .` works (pyproject declares packages, data and dependencies); built offline here."""
    import zipfile

    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = tmp_path.glob("probeseg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (
        "core/train.py",
        "storage/migrations/env.py",
        "storage/migrations/versions/0003_label_operations.py",
        "webapp/static/canvas/main.js",
        "webapp/static/canvas/package.json",
        "engine/engine.py",
        "cli/main.py",
        "experiments/protocol.py",
    ):
        assert path in names, path
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("dist-info/METADATA"))).decode()
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "probeseg = cli.main:main" in entry
    assert "Requires-Dist: torch" in meta and "Provides-Extra: clip" in meta
    assert "Requires-Dist: open_clip_torch" not in meta.split("Provides-Extra: clip")[0]  # only with [clip]


@pytest.mark.parametrize("exc", [KeyError("file"), ValueError("operands could not be broadcast")])
def test_a_bug_is_an_internal_error_logged_with_its_traceback(exc, tmp_path, monkeypatch, capsys):
    import cli.evaluate

    def broken(args):
        raise exc

    monkeypatch.setattr(cli.evaluate, "run_evaluate", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    assert main(["evaluate", "--data", str(tmp_path), "--head", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"internal error ({type(exc).__name__}), logged to " in err and "broadcast" not in err
    log = Path(err.split("logged to ")[1].split(";")[0])
    assert log.parent == tmp_path and "Traceback" in log.read_text() and "def broken" not in err


def test_a_user_error_is_one_line(tmp_path, monkeypatch, capsys):
    import cli.evaluate
    from core.errors import InputError

    def refusing(args):
        raise InputError("--labels DIR holds no label maps; point it at the folder of PNGs")

    monkeypatch.setattr(cli.evaluate, "run_evaluate", refusing)
    assert main(["evaluate", "--data", str(tmp_path), "--head", str(tmp_path)]) == 1
    assert (
        capsys.readouterr().err == "error: --labels DIR holds no label maps; point it at the folder of PNGs\n"
    )
