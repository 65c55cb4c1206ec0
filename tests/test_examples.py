"""Every ``examples/plot_*.py`` runs as a script and saves a PNG."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import iirssm

ROOT = Path(iirssm.__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("plot_*.py"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_examples_found():
    assert len(EXAMPLES) >= 3, EXAMPLES


def test_examples_have_a_gallery_docstring():
    import ast

    for path in EXAMPLES:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")), clean=False)
        assert doc, f"{path.name} has no module docstring"
        lines = doc.strip("\n").splitlines()
        if len(lines) > 1 and lines[1].strip() and set(lines[1].strip()) <= set("=-"):
            del lines[1]                      # a reST underline under the title
        assert len(lines) >= 3 and lines[0].strip() and not lines[1].strip() and \
            lines[2].strip(), f"{path.name}: the docstring needs a title line, a blank " \
            "line and a paragraph (sphinx-gallery)"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_and_saves_a_png(path, tmp_path):
    pytest.importorskip("matplotlib")
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    result = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    pngs = list(tmp_path.glob("*.png"))
    assert pngs, f"{path.name} saved no PNG in the current directory"
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
