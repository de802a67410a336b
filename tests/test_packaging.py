"""Release hygiene: what `python -m build` ships."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import dify_provider

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out)],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    return out


def test_wheel_has_py_typed_entry_points_and_no_tests(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    assert f"-{dify_provider.__version__}-" in wheel.name
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "dify_provider/py.typed" in names
    assert "dify_provider/testing/pytest_plugin.py" in names  # the emulator ships for users' tests
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n]
    assert "dify_provider:get_provider_info" in entry_points
    assert "dify_provider.testing.pytest_plugin" in entry_points


def test_sdist_has_py_typed_and_no_tests(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = archive.getnames()
    assert any(n.endswith("dify_provider/py.typed") for n in names)
    assert not [n for n in names if "/tests/" in n]
    assert any(n.endswith("CHANGELOG.md") for n in names)
