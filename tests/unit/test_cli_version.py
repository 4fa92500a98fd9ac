"""``explora --version``: one line ``explora <version>``, the same version everywhere."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import explora
from explora.cli import main

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_version_is_one_line_naming_the_packages_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"explora {importlib.metadata.version('explora')}\n"
    assert main(["-V"]) == 0
    assert capsys.readouterr().out == f"explora {explora.__version__}\n"


def test_pyproject_package_metadata_and_dunder_version_agree():
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    assert explora.__version__ == declared == importlib.metadata.version("explora")


def test_an_uninstalled_source_tree_falls_back_to_dunder_version(monkeypatch, capsys):
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    monkeypatch.setattr(explora, "__version__", "9.9.9")
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == "explora 9.9.9\n"


@pytest.mark.parametrize("argv", [["train", "--version"], ["--version", "list"]])
def test_version_is_not_taken_from_inside_another_command(argv, capsys):
    assert main(argv) != 0  # tyro's usage error: --version is not an option of a command
    assert "explora 0" not in capsys.readouterr().out


def test_the_entry_point_prints_the_version():
    done = subprocess.run(
        [sys.executable, "-m", "explora.cli", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"explora {explora.__version__}\n"
