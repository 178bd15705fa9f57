"""Where ``automl-bin export`` may write: never over an existing file without ``--force``, never
over a file of a run folder, and a one-paragraph error for destinations it cannot use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from automl_bin.cli import cli


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, make_export_run) -> Path:
    """A finished run's folder: recipe.toml, genotype.json, model.pt and summary.json."""
    return make_export_run(tmp_path_factory.mktemp("export") / "run", finished=True)


def _export(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["export", *args, "--no-verify"])
    assert "Traceback" not in result.output, result.output
    return result.exit_code, " ".join(result.output.split())


def test_an_existing_file_is_replaced_only_with_force(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "net.abin"
    out.write_bytes(b"mine")
    code, text = _export(str(run), "--out", str(out))
    assert code == 2 and "already exists; pass --force" in text
    assert out.read_bytes() == b"mine"
    code, text = _export(str(run), "--out", str(out), "--force")
    assert code == 0, text
    assert out.read_bytes()[:4] != b"mine" and out.stat().st_size > 100
    # torchscript goes through the same check
    code, text = _export(str(run), "--format", "torchscript", "--out", str(out))
    assert code == 2 and "--force" in text


def test_the_default_export_is_written_once_then_needs_force(tmp_path: Path,
                                                            make_export_run) -> None:
    folder = make_export_run(tmp_path / "run", finished=True)
    code, text = _export(str(folder))
    assert code == 0 and (folder / "model.abin").is_file(), text
    code, text = _export(str(folder))
    assert code == 2 and "--force" in text
    code, text = _export(str(folder), "--force")  # an earlier export may be replaced
    assert code == 0, text


@pytest.mark.parametrize("name", ["model.pt", "recipe.toml", "summary.json", "genotype.json"])
def test_files_of_a_run_folder_are_never_replaced(run: Path, name: str) -> None:
    before = (run / name).read_bytes()
    code, text = _export(str(run), "--out", str(run / name), "--force")
    assert code == 2
    assert "is a file of the run folder" in text and "not even with --force" in text
    assert (run / name).read_bytes() == before


def test_files_of_another_run_folder_and_through_links_are_never_replaced(
        run: Path, tmp_path: Path, make_export_run) -> None:
    other = make_export_run(tmp_path / "other", finished=True)
    (other / "search").mkdir()
    plot = other / "search" / "curves.png"
    plot.write_bytes(b"png")
    link = tmp_path / "link.pt"
    link.symlink_to(other / "model.pt")
    before = (other / "model.pt").read_bytes()
    for target in (plot, link):
        code, text = _export(str(run), "--out", str(target), "--force")
        assert code == 2 and "run folder" in text, text
    assert plot.read_bytes() == b"png" and (other / "model.pt").read_bytes() == before
    # a new file in a run folder is fine (the default export goes there too)
    code, text = _export(str(run), "--out", str(other / "copy.abin"))
    assert code == 0, text


def test_odd_destinations_are_one_paragraph_errors(run: Path, tmp_path: Path) -> None:
    cases = {
        str(tmp_path): "is a folder",
        str(tmp_path / "missing" / "net.abin"): "does not exist; create it first",
        "/proc/version": "already exists; pass --force",
    }
    if os.path.exists("/dev/null"):
        cases["/dev/null"] = "not a regular file"
    for out, message in cases.items():
        code, text = _export(str(run), "--out", out)
        assert code == 2 and message in text, (out, text)
        assert len(text) < 400


@pytest.mark.skipif(not Path("/proc/version").is_file(), reason="needs Linux's /proc")
def test_a_folder_that_refuses_files_is_a_usage_error(run: Path) -> None:
    code, text = _export(str(run), "--out", "/proc/version", "--force")
    assert code == 2
    assert "Cannot write the exported network to '/proc/version'" in text
    assert "Pass --out with a path in a folder you can write to" in text
