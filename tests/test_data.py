"""Tests for iirssm.data: the shipped CO2 record and its loader."""

import hashlib
import re
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

from iirssm.data import TimeSeries, load_co2


def test_load_co2_matches_its_docstring():
    data = load_co2()
    assert isinstance(data, TimeSeries)
    times, values = data
    assert times.dtype == np.dtype("datetime64[D]")
    assert values.dtype == np.float64
    assert times.shape == values.shape == (2284,)
    assert str(times[0]) == "1958-03-29"
    assert str(times[-1]) == "2001-12-29"
    # a regular weekly grid, strictly increasing
    assert np.all(np.diff(times) == np.timedelta64(7, "D"))
    missing = np.isnan(values)
    assert missing.sum() == 59
    assert not missing[0] and not missing[-1]
    assert np.all((values[~missing] > 300) & (values[~missing] < 400))


def test_load_co2_returns_fresh_writable_arrays():
    first = load_co2()
    first.values[:] = 0.0
    first.times[:] = np.datetime64("2000-01-01")
    second = load_co2()
    assert second.values[0] == 316.1
    assert str(second.times[0]) == "1958-03-29"


def test_csv_matches_the_checksum_in_the_readme():
    files = resources.files("iirssm.data")
    readme = files.joinpath("README.md").read_text(encoding="utf-8")
    recorded = re.search(r"SHA-256 \| `([0-9a-f]{64})`", readme)
    assert recorded is not None
    digest = hashlib.sha256(files.joinpath("mauna_loa_co2.csv").read_bytes()).hexdigest()
    assert digest == recorded.group(1)


def test_import_data_does_not_import_pandas():
    code = "import sys, iirssm.data; iirssm.data.load_co2(); print('pandas' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("halflife", ["28D", "365D"])
def test_ema_of_the_gappy_record_matches_pandas(halflife):
    pd = pytest.importorskip("pandas")
    import iirssm

    times, values = load_co2()
    got = iirssm.ema(values, halflife=np.timedelta64(pd.Timedelta(halflife)), times=times,
                     adjust=True)
    times_ns = times.astype("datetime64[ns]")  # pandas supports s, ms, us, ns resolutions
    expected = (pd.Series(values, index=times_ns)
                .ewm(halflife=halflife, times=times_ns, adjust=True).mean().to_numpy())
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=0)
