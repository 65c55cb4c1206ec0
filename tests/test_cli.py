"""Tests for the ``iirssm`` command line (iirssm._cli, iirssm._demo, iirssm._info)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import iirssm
from iirssm._cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run_python(*args):
    """Run ``python *args`` with this checkout's iirssm importable."""
    root = str(Path(iirssm.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


# --- info -------------------------------------------------------------------------------

def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert np.__version__ in out
    for word in ("iirssm", "Python", "scipy", "numba threads", "NUMBA_NUM_THREADS", "CPUs",
                 "numba CPU", "CuPy GPU"):
        assert word in out


def test_info_does_not_import_optional_packages():
    code = ("import sys; from iirssm._cli import main; main(['info']); "
            "print(sorted(m for m in ('pandas', 'matplotlib', 'sklearn', 'dask') "
            "if m in sys.modules))")
    result = _run_python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_python_m_iirssm_info():
    result = _run_python("-m", "iirssm", "info")
    assert result.returncode == 0, result.stderr
    assert np.__version__ in result.stdout
    assert result.stderr == ""


def test_import_iirssm_does_not_import_cli_or_optional_packages():
    code = ("import sys, iirssm; print(sorted(m for m in ('iirssm._cli', 'iirssm._demo', "
            "'iirssm._info', 'matplotlib', 'pandas') if m in sys.modules))")
    result = _run_python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- demo -------------------------------------------------------------------------------

def _check_summary(out):
    assert "Mauna Loa" in out
    assert "2284 weeks, 59 missing" in out
    assert "1958-03-29 to 2001-12-29" in out
    assert "half-life 4 weeks" in out and "half-life 1 year" in out
    trend = re.search(r"trend\s+([+-]\d+\.\d+) ppm/year", out)
    assert trend is not None
    assert 1.0 < float(trend.group(1)) < 2.5  # CO2 rose by ~1.5 ppm/year in the 1990s
    assert re.search(r"timing\s+2 EMAs of 2284 samples: \d+\.\d+ ms", out)


def test_demo_writes_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "x.png"
    assert main(["demo", "--output", path]) == 0
    out = capsys.readouterr().out
    _check_summary(out)
    assert f"saved to {path}" in out
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000


def test_demo_default_output_in_current_directory(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    assert "saved to iirssm-demo.png" in capsys.readouterr().out
    assert (tmp_path / "iirssm-demo.png").read_bytes().startswith(PNG_SIGNATURE)


def test_demo_no_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--no-plot"]) == 0
    out = capsys.readouterr().out
    _check_summary(out)
    assert "plot" not in out.split("timing")[-1]
    assert list(tmp_path.iterdir()) == []


def test_demo_without_matplotlib(tmp_path, monkeypatch, capsys):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends",
                 "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail
    path = tmp_path / "x.png"
    assert main(["demo", "--output", str(path)]) == 0
    out = capsys.readouterr().out
    _check_summary(out)
    assert "pip install iirssm[plot]" in out
    assert not path.exists()


def test_demo_unwritable_output(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "no-such-directory" / "x.png"
    assert main(["demo", "--output", str(path)]) == 1
    err = capsys.readouterr().err
    assert "cannot write the plot" in err and "no-such-directory" in err


# --- argument errors --------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["bogus"],
    [],
    ["demo", "--no-plot", "--output", "x.png"],
    ["demo", "--bogus"],
    ["info", "extra"],
])
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    assert "usage: iirssm" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["--version"])
    assert excinfo.value.code == 0
    assert capsys.readouterr().out.strip() == f"iirssm {iirssm.__version__}"
