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


# --- filter -----------------------------------------------------------------------------

from conftest import assert_close  # noqa: E402

from iirssm import _filtercmd  # noqa: E402

N_ROWS = 3001    # not a multiple of any chunk size below


def _frame(n=N_ROWS, seed=0):
    """A table with a datetime column, two signals (one with gaps) and a label column."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(seed)
    t = (np.datetime64("2024-01-01T00:00:00") + np.cumsum(rng.integers(1, 120, n))
         .astype("m8[s]"))
    a = rng.standard_normal(n)
    a[[5, 6, n // 2]] = np.nan
    return pd.DataFrame({"time": pd.Series(t).dt.strftime("%Y-%m-%d %H:%M:%S"),
                         "a": a, "b": rng.standard_normal(n).cumsum(),
                         "label": rng.choice(["up", "down", "NA", ""], n)})


def _times(frame):
    import pandas as pd

    return pd.to_datetime(frame["time"]).to_numpy()


def _filter(tmp_path, *argv):
    return main(["filter", *map(str, argv), "--no-progress"])


def _read_csv(path):
    import pandas as pd

    return pd.read_csv(path, keep_default_na=False, dtype={"time": str, "label": str},
                       na_values={"a": [""], "b": [""]})


@pytest.mark.parametrize("n,chunksize", [(N_ROWS, None), (40, 1), (N_ROWS, 7), (N_ROWS, 1000),
                                         (N_ROWS, N_ROWS - 1), (N_ROWS, N_ROWS + 5)])
def test_filter_csv_ema_times_equals_direct_call(tmp_path, n, chunksize):
    frame = _frame(n)
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    frame.to_csv(src, index=False)
    extra = [] if chunksize is None else ["--chunksize", chunksize]
    assert _filter(tmp_path, src, "-o", dst, "--filter", "ema", "--param",
                   "halflife=5min,adjust=true", "--time-column", "time", *extra) == 0
    got = _read_csv(dst)
    want = iirssm.ema(frame[["a", "b"]].to_numpy(), halflife=np.timedelta64(5, "m"),
                      times=_times(frame), adjust=True, axis=0)
    assert list(got.columns) == ["time", "a", "b", "label"]
    assert_close(got[["a", "b"]].to_numpy(), want)
    # the other columns pass through byte for byte
    src_lines = src.read_text().splitlines()
    dst_lines = dst.read_text().splitlines()
    assert len(src_lines) == len(dst_lines) == n + 1
    for s, d in zip(src_lines, dst_lines, strict=True):
        assert s.split(",")[0] == d.split(",")[0] and s.split(",")[3] == d.split(",")[3]


@pytest.mark.parametrize("name,params,direct", [
    ("butter", "order=4,cutoff=0.1",
     lambda x: iirssm.sosfilt(__import__("scipy.signal").signal.butter(4, 0.1, output="sos"),
                              x, axis=0)),
    ("lfilter", "b=0.2,0.2,a=1,-0.6", lambda x: iirssm.lfilter([0.2, 0.2], [1, -0.6], x, axis=0)),
    ("recurrence", "a=0.9", lambda x: iirssm.linear_recurrence(0.9, x, axis=0)),
    ("ema", "alpha=0.1,min_periods=3", lambda x: iirssm.ema(x, alpha=0.1, min_periods=3, axis=0)),
])
@pytest.mark.parametrize("chunksize", [13, 1000])
def test_filter_parquet_round_trip(tmp_path, name, params, direct, chunksize):
    pytest.importorskip("pyarrow")
    frame = _frame()
    frame["time"] = _times(frame)
    src, dst = tmp_path / "in.parquet", tmp_path / "out.parquet"
    frame.to_parquet(src)
    assert _filter(tmp_path, src, "-o", dst, "--filter", name, "--param", params,
                   "--columns", "a,b", "--chunksize", chunksize) == 0
    import pandas as pd

    got = pd.read_parquet(dst)
    assert list(got.columns) == list(frame.columns)
    assert_close(got[["a", "b"]].to_numpy(), direct(frame[["a", "b"]].to_numpy()))
    assert (got["time"].to_numpy() == frame["time"].to_numpy()).all()
    assert got["label"].tolist() == frame["label"].tolist()


@pytest.mark.parametrize("dtype,chunksize", [(np.float64, 1), (np.float64, 999),
                                             (np.float32, 64), (np.int32, None)])
def test_filter_npy_round_trip(tmp_path, dtype, chunksize):
    import scipy.signal

    x = np.random.default_rng(3).standard_normal((2000, 3))
    x = (x * 100).astype(dtype) if dtype is np.int32 else x.astype(dtype)
    src, dst = tmp_path / "in.npy", tmp_path / "out.npy"
    np.save(src, x)
    extra = [] if chunksize is None else ["--chunksize", chunksize]
    assert _filter(tmp_path, src, "-o", dst, "--filter", "cheby1", "--param",
                   "order=3,rp=1,cutoff=0.05,0.3,btype=bandpass", "-c", "0,2",
                   "--initial", "steady", *extra) == 0
    got = np.load(dst)
    sos = scipy.signal.cheby1(3, 1, [0.05, 0.3], "bandpass", output="sos")
    xf = x[:, [0, 2]].astype(np.float32 if dtype is np.float32 else np.float64)
    zi = scipy.signal.sosfilt_zi(sos)[:, :, None] * xf[0][None, None, :]
    want, _ = scipy.signal.sosfilt(sos, xf, axis=0, zi=zi)
    assert got.shape == x.shape
    assert got.dtype == want.dtype == np.float64    # scipy's rule: float64 coefficients
    assert_close(got[:, [0, 2]], want)
    np.testing.assert_array_equal(got[:, 1], x[:, 1])


def test_filter_npy_float32_stays_float32(tmp_path):
    x = np.random.default_rng(4).standard_normal((700, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert _filter(tmp_path, tmp_path / "x.npy", "-o", tmp_path / "y.npy", "-f", "ema",
                   "-p", "com=4", "--chunksize", 100) == 0
    got = np.load(tmp_path / "y.npy")
    assert got.dtype == np.float32
    assert_close(got, iirssm.ema(x, com=4, axis=0))


def test_filter_npy_1d_and_empty(tmp_path):
    x = np.linspace(0.0, 1.0, 100)
    np.save(tmp_path / "one.npy", x)
    assert _filter(tmp_path, tmp_path / "one.npy", "-o", tmp_path / "o.npy", "-f", "ema",
                   "-p", "span=10", "--chunksize", 33) == 0
    got = np.load(tmp_path / "o.npy")
    assert got.shape == (100,)
    assert_close(got, iirssm.ema(x, span=10))
    np.save(tmp_path / "empty.npy", np.zeros((0, 2)))
    assert _filter(tmp_path, tmp_path / "empty.npy", "-o", tmp_path / "e.npy", "-f", "ema",
                   "-p", "span=10") == 0
    assert np.load(tmp_path / "e.npy").shape == (0, 2)


def test_filter_cross_formats_and_suffix(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    frame = _frame(500)
    src = tmp_path / "in.csv"
    frame.to_csv(src, index=False)
    want = iirssm.ema(frame["b"].to_numpy(), alpha=0.2)
    # CSV -> Parquet, keeping the original column and adding b_ema
    assert _filter(tmp_path, src, "-o", tmp_path / "o.parquet", "-f", "ema", "-p", "alpha=0.2",
                   "-c", "b", "--suffix", "_ema", "--chunksize", 77) == 0
    got = pd.read_parquet(tmp_path / "o.parquet")
    assert list(got.columns) == ["time", "a", "b", "label", "b_ema"]
    assert_close(got["b_ema"].to_numpy(), want)
    assert_close(got["b"].to_numpy(), frame["b"].to_numpy())
    # CSV -> .npy (numeric columns only), via --output-format on an odd extension
    assert _filter(tmp_path, src, "-o", tmp_path / "o.dat", "--output-format", "npy",
                   "-f", "ema", "-p", "alpha=0.2", "-c", "b", "--chunksize", 77,
                   "--columns", "a") != 0  # 'a' and 'b' filtered, but time is not numeric
    assert not (tmp_path / "o.dat").exists()
    np.save(tmp_path / "x.npy", frame[["a", "b"]].to_numpy())
    # .npy -> CSV: columns are named 0, 1
    assert _filter(tmp_path, tmp_path / "x.npy", "-o", tmp_path / "o.csv", "-f", "ema",
                   "-p", "alpha=0.2", "-c", "1") == 0
    got = pd.read_csv(tmp_path / "o.csv")
    assert list(got.columns) == ["0", "1"]
    assert_close(got["1"].to_numpy(), want)


def test_filter_selective_model(tmp_path):
    ssm = iirssm.SelectiveSSM.random_state(dim=2, d_state=4, seed=0, dtype=np.float64)
    ssm.save(tmp_path / "m.npz")
    x = np.random.default_rng(0).standard_normal((300, 3))
    np.save(tmp_path / "x.npy", x)
    assert _filter(tmp_path, tmp_path / "x.npy", "-o", tmp_path / "y.npy", "-f", "selective",
                   "-p", f"file={tmp_path / 'm.npz'}", "-c", "0,1", "--chunksize", 41) == 0
    want = ssm.filter(np.ascontiguousarray(x[:, :2].T)[None])[0].T
    assert_close(np.load(tmp_path / "y.npy")[:, :2], want)


def test_filter_numeric_time_column_and_sos_file(tmp_path):
    import pandas as pd
    import scipy.signal

    rng = np.random.default_rng(5)
    t = np.cumsum(rng.exponential(2.0, 400))
    frame = pd.DataFrame({"t": t, "v": rng.standard_normal(400)})
    frame.to_csv(tmp_path / "in.csv", index=False)
    assert _filter(tmp_path, tmp_path / "in.csv", "-o", tmp_path / "o.csv", "-f", "ema",
                   "-p", "halflife=3", "-t", "t", "--chunksize", 50) == 0
    got = pd.read_csv(tmp_path / "o.csv")
    assert_close(got["v"].to_numpy(), iirssm.ema(frame["v"].to_numpy(), halflife=3.0, times=t))
    np.testing.assert_array_equal(got["t"].to_numpy(), t)   # shortest exact repr round trip
    sos = scipy.signal.ellip(4, 1, 40, 0.2, output="sos")
    np.savetxt(tmp_path / "sos.csv", sos, delimiter=",")
    # a time column with a non-ema filter is only excluded from the filtered columns
    assert _filter(tmp_path, tmp_path / "in.csv", "-o", tmp_path / "o2.csv", "-f", "sos",
                   "-p", f"file={tmp_path / 'sos.csv'}", "-t", "t", "--chunksize", 64) == 0
    got = pd.read_csv(tmp_path / "o2.csv")
    assert_close(got["v"].to_numpy(), scipy.signal.sosfilt(sos, frame["v"].to_numpy()))
    np.testing.assert_array_equal(got["t"].to_numpy(), t)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_filter_time_zones_across_daylight_saving(tmp_path, fmt):
    import pandas as pd

    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    t = pd.date_range("2024-03-30", periods=300, freq="37min", tz="Europe/Berlin")
    frame = pd.DataFrame({"t": t, "v": np.random.default_rng(0).standard_normal(300)})
    src = tmp_path / f"in.{fmt}"
    frame.to_csv(src, index=False) if fmt == "csv" else frame.to_parquet(src)
    assert _filter(tmp_path, src, "-o", tmp_path / "o.csv", "-f", "ema", "-p", "halflife=2h",
                   "-t", "t", "--chunksize", 50) == 0
    got = pd.read_csv(tmp_path / "o.csv")
    utc = t.tz_convert("UTC").tz_localize(None).to_numpy()
    assert_close(got["v"].to_numpy(), iirssm.ema(frame["v"].to_numpy(), halflife="2h", times=utc))


def test_parse_params():
    assert _filtercmd.parse_params(["b=1,2,a=1,-0.5", "x=y"]) == {
        "b": ["1", "2"], "a": ["1", "-0.5"], "x": ["y"]}
    for bad in (["alpha"], ["=3"], ["a=1", "a=2"], ["a=1,,2"]):
        with pytest.raises(_filtercmd.FilterError):
            _filtercmd.parse_params(bad)


@pytest.mark.parametrize("argv,message", [
    (["{d}/missing.csv", "-o", "{d}/o.csv", "-f", "ema", "-p", "alpha=0.1"], "does not exist"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "ema", "-p", "alpha=2"], "alpha must be in (0, 1]"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "ema", "-p", "alpha=0.1", "-c", "a,zz"],
     "'zz' is not a column"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "ema", "-p", "alpha=0.1", "-t", "when"],
     "'when' is not a column"),
    (["{d}/in.csv", "-o", "{d}/o.txt", "-f", "ema", "-p", "alpha=0.1"],
     "cannot tell the format of output"),
    (["{d}/in.txt", "-o", "{d}/o.csv", "-f", "ema", "-p", "alpha=0.1"],
     "cannot tell the format of input"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "kalman"], "unknown filter 'kalman'"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "ema", "-p", "beta=1"],
     "does not take parameter(s) beta"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "butter", "-p", "order=4"],
     "needs parameter cutoff"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "butter", "-p", "order=four,cutoff=0.1"],
     "order must be an integer >= 1"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "butter", "-p", "order=4,cutoff=1.5"],
     "critical frequencies"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "butter", "-p", "order=4,cutoff=0.1,btype=odd"],
     "btype must be one of"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "lfilter", "-p", "a=1"], "needs parameter b"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "sos", "-p", "sos=1,2,3"], "6 numbers per section"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "sos", "-p", "file={d}/none.npy"], "does not exist"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "ema", "-p", "adjust=maybe,alpha=0.1"],
     "adjust must be true or false"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "ema", "-p", "halflife=5", "-t", "time"],
     "halflife must be a timedelta"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "ema", "-p", "alpha=0.1", "-c", "label"],
     "column 'label': value"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "ema", "-p", "alpha=0.1", "-c", "a",
      "-t", "a"], "cannot also be filtered"),
    (["{d}/in.csv", "-o", "{d}/nodir/o.csv", "-f", "ema", "-p", "alpha=0.1"],
     "output directory"),
    (["{d}/in.csv", "-o", "{d}", "-f", "ema", "-p", "alpha=0.1", "--output-format", "csv"],
     "is a directory"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "ema", "-p", "alpha=0.1", "--chunksize", "0"],
     "--chunksize must be a positive"),
    (["{d}/in.csv", "-o", "{d}/o.npy", "-f", "ema", "-p", "alpha=0.1"], "not numeric"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "-f", "ema", "-p", "alpha=0.1", "--suffix", "",
      "-c", "a", "--suffix", "bel", "-c", "la"], "not a column"),
    (["{d}/bad.csv", "-o", "{d}/o.csv", "-f", "ema", "-p", "alpha=0.1", "--chunksize", "64",
      "-c", "a,b"],
     "'oops' in data row 351 is not a number"),
    (["{d}/in.csv", "-o", "{d}/o.csv", "--format", "npy", "-f", "ema", "-p", "alpha=0.1"],
     "as .npy"),
    (["{d}/x.npy", "-o", "{d}/o.csv", "-f", "selective", "-p", "file={d}/in.csv"],
     "cannot load the model"),
    (["{d}/x.npy", "-o", "{d}/o.csv", "-f", "recurrence", "-p", "a=0.5,0.6,0.7"],
     "one value or one per filtered column"),
    (["{d}/x3.npy", "-o", "{d}/o.npy", "-f", "ema", "-p", "alpha=0.5"], "1-D"),
])
def test_filter_errors_exit_2_and_leave_nothing(tmp_path, capsys, argv, message):
    _frame(400).to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "in.txt").write_text("a\n1\n")
    frame = _frame(400)
    frame["b"] = frame["b"].astype(object)
    frame.loc[350, "b"] = "oops"   # a bad value late in the file, after chunks were written
    frame.to_csv(tmp_path / "bad.csv", index=False)
    np.save(tmp_path / "x.npy", np.ones((10, 2)))
    np.save(tmp_path / "x3.npy", np.ones((2, 2, 2)))
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [a.format(d=tmp_path) for a in argv]
    assert main(["filter", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("iirssm filter: error: ") and err.count("\n") == 1, err
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before   # no output, no temporary


def test_filter_failure_keeps_existing_output(tmp_path, capsys):
    frame = _frame(400)
    frame["b"] = frame["b"].astype(object)
    frame.loc[399, "b"] = "oops"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    (tmp_path / "o.csv").write_text("precious\n")
    assert main(["filter", str(tmp_path / "bad.csv"), "-o", str(tmp_path / "o.csv"), "-f",
                 "ema", "-p", "alpha=0.1", "-c", "a,b", "--chunksize", "10", "--no-progress"]) == 2
    assert (tmp_path / "o.csv").read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "o.csv"]


def test_filter_bad_arguments_exit_2(capsys):
    for argv in (["filter"], ["filter", "x.csv"], ["filter", "x.csv", "-o", "y.csv"],
                 ["filter", "x.csv", "-o", "y.csv", "-f", "ema", "--initial", "warm"]):
        with pytest.raises(SystemExit) as excinfo:
            main(argv)
        assert excinfo.value.code == 2
    assert "usage: iirssm filter" in capsys.readouterr().err


def test_filter_help_lists_filters_and_examples(capsys):
    with pytest.raises(SystemExit):
        main(["filter", "--help"])
    out = capsys.readouterr().out
    for word in _filtercmd.FILTERS + ("examples:", "--time-column", "--chunksize"):
        assert word in out


def test_filter_output_file_mode(tmp_path):
    np.save(tmp_path / "x.npy", np.ones(10))
    assert _filter(tmp_path, tmp_path / "x.npy", "-o", tmp_path / "y.npy", "-f", "ema",
                   "-p", "alpha=0.5") == 0
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "y.npy").stat().st_mode & 0o777 == 0o666 & ~mask


class _Terminal:
    def __init__(self):
        self.text = ""

    def write(self, s):
        self.text += s

    def flush(self):
        pass

    def isatty(self):
        return True


def test_progress_bar_on_a_terminal(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.ones((5000, 2)))
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    monkeypatch.setattr(_filtercmd.Progress, "update",
                        lambda self, done, force=False, _u=_filtercmd.Progress.update:
                        _u(self, done, force=True))
    assert main(["filter", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "-f", "ema",
                 "-p", "alpha=0.5", "--chunksize", "1000"]) == 0
    assert "\riirssm filter [" in term.text and "100.0%" in term.text
    assert "5,000 rows" in term.text and term.text.endswith("\n")
    term.text = ""
    assert main(["filter", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "-f", "ema",
                 "-p", "alpha=0.5", "--no-progress"]) == 0
    assert term.text == ""


def test_progress_silent_when_not_a_terminal(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.ones((50, 2)))
    assert main(["filter", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "-f", "ema",
                 "-p", "alpha=0.5"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_python_m_iirssm_filter(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(20.0))
    result = _run_python("-m", "iirssm", "filter", str(tmp_path / "x.npy"), "-o",
                         str(tmp_path / "y.npy"), "-f", "recurrence", "-p", "a=0.5")
    assert result.returncode == 0, result.stderr
    assert_close(np.load(tmp_path / "y.npy"),
                 iirssm.linear_recurrence(0.5, np.arange(20.0)))
    result = _run_python("-m", "iirssm", "filter", str(tmp_path / "nope.npy"), "-o",
                         str(tmp_path / "y.npy"), "-f", "ema", "-p", "alpha=0.5")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"iirssm filter: error: input file {str(tmp_path / 'nope.npy')!r} does not exist"]


# --- bench ------------------------------------------------------------------------------

def test_bench_tiny(capsys):
    assert main(["bench", "--size", "0.001", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    for word in ("ema alpha=0.1", "times=", "lfilter butter(4)", "sosfilt butter(8)",
                 "scipy.signal.lfilter", "x.copy() (memory floor)", "speed-up"):
        assert word in out
    diffs = [float(m) for m in re.findall(r"\s(\d\.\de[-+]\d\d)\s", out)]
    assert len(diffs) == 4 and max(diffs) < 1e-6


def test_bench_bad_size(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["bench", "--size", "0"])
    assert excinfo.value.code == 2
    assert "--size must be > 0" in capsys.readouterr().err
