"""The Sphinx sources list every public name and every guide, and the site builds cleanly."""

import importlib
import re
from pathlib import Path

import pytest

import iirssm

DOCS = Path(iirssm.__file__).resolve().parents[1] / "docs"


def _autosummary_names(text):
    """``{module: {names}}`` from the ``currentmodule`` + ``autosummary`` blocks of api.rst."""
    found, module = {}, None
    block = False
    for line in text.splitlines():
        m = re.match(r"\.\. currentmodule:: (\S+)", line)
        if m:
            module = m.group(1)
            continue
        if line.startswith(".. autosummary::"):
            block = True
            continue
        if block:
            if line.strip() and not line.startswith("   "):
                block = False
            elif line.strip() and not line.strip().startswith(":"):
                found.setdefault(module, set()).add(line.strip())
    return found


@pytest.mark.parametrize("module", ["iirssm", "iirssm.data", "iirssm.sklearn", "iirssm.dask"])
def test_api_reference_lists_every_public_name(module):
    if module in ("iirssm.sklearn", "iirssm.dask"):
        pytest.importorskip(module.split(".")[1])
    mod = importlib.import_module(module)
    public = {n for n in mod.__all__ if not n.startswith("__")}
    listed = _autosummary_names((DOCS / "api.rst").read_text(encoding="utf-8")).get(module, set())
    assert public - listed == set(), f"missing from docs/api.rst: {sorted(public - listed)}"
    assert listed - public == set(), f"not public, but in docs/api.rst: {sorted(listed - public)}"


def test_every_guide_is_in_the_toctree():
    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    entries = set(re.findall(r"^   ([\w/]+)\s*$", index, flags=re.M))
    guides = {p.stem for p in DOCS.glob("*.md")}
    assert guides - entries == set(), f"not in docs/index.rst: {sorted(guides - entries)}"


@pytest.mark.slow
def test_sphinx_build_has_no_warnings(tmp_path):
    """The whole site builds with warnings as errors, the gallery's examples run."""
    pytest.importorskip("sphinx")
    pytest.importorskip("sphinx_gallery")
    pytest.importorskip("myst_parser")
    pytest.importorskip("numpydoc")
    pytest.importorskip("pydata_sphinx_theme")
    import subprocess
    import sys
    res = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        capture_output=True, text=True, env={**__import__("os").environ, "MPLBACKEND": "Agg"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (tmp_path / "html" / "api.html").exists()
