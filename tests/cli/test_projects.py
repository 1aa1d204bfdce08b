"""`export-project` and `import-project`: a project to a file and back through the command line."""

from __future__ import annotations

import numpy as np

from cli.main import main
from storage import Repository
from tests.images import png_bytes, two_colour


def test_export_and_import_a_project_from_the_command_line(tmp_path, capsys):
    data = tmp_path / "data"
    with Repository.open(data) as repo:
        p = repo.create_project("default")
        red = repo.add_class(p.id, "red", "#aa0000")
        im = repo.add_image(p.id, png_bytes(two_colour()), "two.png")
        repo.add_point(im.id, red.id, 10, 10, 3)
        labels = repo.label_map(im.id)
    common = ["--data-dir", str(data)]
    assert main(["export-project", *common, "--out", str(tmp_path / "p.zip")]) == 0
    assert main(["export-project", *common, "--format", "voc", "--out", str(tmp_path / "v.zip")]) == 0
    assert main(["import-project", *common, "--file", str(tmp_path / "p.zip"), "--name", "copy"]) == 0
    assert "project 'copy': 1 images, 2 classes" in capsys.readouterr().out
    assert main(["import-project", *common, "--file", str(tmp_path / "v.zip"), "--name", "voc"]) == 0
    with Repository.open(data) as repo:
        for name in ("copy", "voc"):
            [back] = repo.list_images(repo.find_project(name).id)
            assert np.array_equal(repo.label_map(back.id), labels)
    # a VOC zip merged into a project that has the image already: nothing doubled
    assert main(["import-project", *common, "--file", str(tmp_path / "v.zip"), "--into", "voc"]) == 0
    assert "project 'voc': 1 images" in capsys.readouterr().out
    assert main(["import-project", *common, "--file", str(tmp_path / "p.zip"), "--name", "copy"]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and len(err.strip().splitlines()) == 1
    assert main(["export-project", *common, "--project", "nope", "--out", str(tmp_path / "x.zip")]) == 1
    assert "no project named 'nope'" in capsys.readouterr().err
