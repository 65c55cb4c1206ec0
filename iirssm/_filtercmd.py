"""The ``iirssm filter`` command: filter columns of a CSV, Parquet or ``.npy`` file.

The file is read and written in chunks of rows, so memory stays bounded
whatever the file's size; each filter carries its state from one chunk to the
next (``zi``/``zf``, an :class:`iirssm.EMAState` for ``ema``), so the output
equals filtering the whole file at once. Columns that are not filtered (a time
column, labels) are written back unchanged. The output is written to a
temporary file in the output's directory and renamed over ``OUTPUT`` only when
everything succeeded: a failure leaves no partial output behind.

pandas reads and writes CSV files, pyarrow Parquet files (both in the ``io``
extra: ``pip install iirssm[io]``); ``.npy`` files need NumPy only. None of
them is imported by ``import iirssm``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FilterError", "add_parser", "parse_params", "run"]

#: Extensions and the format they mean.
EXTENSIONS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".npy": "npy"}
FORMATS = ("csv", "parquet", "npy")
#: Default chunk: this many values (rows x columns) at a time, at least MIN_ROWS rows.
CHUNK_VALUES = 1 << 20
MIN_ROWS = 1024
#: pandas' default missing-value strings (``read_csv``'s ``na_values`` documentation);
#: applied to the filtered columns only, so that other columns pass through verbatim.
NA_STRINGS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan",
              "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan",
              "null"]
DESIGNS = ("butter", "cheby1", "cheby2", "ellip", "bessel")
FILTERS = ("ema", "lfilter", "sos", *DESIGNS, "recurrence", "selective")

FILTER_HELP = """\
filters (--filter NAME) and their parameters (--param KEY=VALUE, repeatable; several
pairs may share one --param separated by commas, and a list value continues
after a comma: --param b=0.2,0.2,a=1,-0.6 gives b=[0.2, 0.2] and a=[1, -0.6]):

  ema         iirssm.ema (pandas ewm(...).mean() semantics). Exactly one of
              alpha, com, span, halflife; optional adjust=false, ignore_na=false,
              min_periods=0. With --time-column the decay follows the time stamps
              (times=): halflife is then in the units of a numeric time column, or
              a duration such as 30s, 1h, 7D for date/time columns.
  lfilter     iirssm.lfilter: b=B0,B1,... and a=A0,A1,... (default a=1).
  sos         iirssm.sosfilt: sos=... (6 numbers per section: b0,b1,b2,a0,a1,a2)
              or file=PATH (.npy, or a comma-separated text file, of shape
              (n_sections, 6)).
  butter, cheby1, cheby2, ellip, bessel
              the scipy.signal design of that name as second-order sections, run
              by iirssm.sosfilt: order=N, cutoff=F (or F1,F2 for band filters),
              btype=low|high|bandpass|bandstop (default low), fs=FS (the sampling
              rate cutoff is given in; default: cutoff is a fraction of Nyquist),
              rp=DB (cheby1, ellip), rs=DB (cheby2, ellip), norm=phase|delay|mag
              (bessel).
  recurrence  iirssm.linear_recurrence h[t] = a*h[t-1] + x[t]: a=A (or one value
              per filtered column).
  selective   a Mamba selective SSM (iirssm.SelectiveSSM) whose channels are the
              filtered columns: file=PATH.npz written by SelectiveSSM.save.

lfilter, sos and the designs start from rest (--initial zero) or in the steady
state of the first sample's value (--initial steady, as scipy's lfilter_zi).

formats: .csv (pandas), .parquet/.pq (pyarrow), .npy (rows are samples, columns
are named 0, 1, ...); from the extension, or --format / --output-format.

examples:
  iirssm filter prices.csv -o smooth.csv --time-column time --filter ema --param halflife=1h
  iirssm filter log.parquet -o low.parquet --columns x,y --filter butter \\
      --param order=4,cutoff=5,fs=100
  iirssm filter signal.npy -o out.npy --filter lfilter --param b=0.2,0.2 --param a=1,-0.6
"""


class FilterError(Exception):
    """A problem with the command's files or arguments: reported on one line, exit 2."""


# --------------------------------------------------------------------------- parameters

def parse_params(items):
    """Parse ``--param`` strings into ``{key: [raw values]}``.

    Each string holds ``KEY=VALUE`` pairs separated by commas; a comma-separated
    part without ``=`` continues the list value of the key before it.

    Examples
    --------
    >>> from iirssm._filtercmd import parse_params
    >>> parse_params(["order=4,cutoff=0.1,0.2", "btype=bandpass"])
    {'order': ['4'], 'cutoff': ['0.1', '0.2'], 'btype': ['bandpass']}
    """
    params: dict[str, list[str]] = {}
    for item in items:
        key = None
        for part in item.split(","):
            part = part.strip()
            if "=" in part:
                key, _, value = part.partition("=")
                key = key.strip()
                if not key:
                    raise FilterError(f"--param {item!r}: a parameter name is missing "
                                      "before '='")
                if key in params:
                    raise FilterError(f"--param: parameter {key!r} is given twice")
                params[key] = [value.strip()]
            elif key is None or not part:
                raise FilterError(f"--param expects KEY=VALUE[,VALUE...][,KEY=VALUE...]; "
                                  f"got {item!r}")
            else:
                params[key].append(part)
    return params


class _Params:
    """Typed access to the parsed parameters of one filter, rejecting unknown keys."""

    def __init__(self, name, raw, allowed):
        self.name = name
        self.raw = raw
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise FilterError(f"--filter {name} does not take parameter(s) "
                              f"{', '.join(unknown)}; it takes {', '.join(allowed) or 'none'}")

    def _err(self, key, expected, values):
        shown = ",".join(values)
        return FilterError(f"--filter {self.name}: parameter {key} must be {expected}; "
                           f"got {shown!r}")

    def has(self, key):
        return key in self.raw

    def required(self, key):
        if key not in self.raw:
            raise FilterError(f"--filter {self.name} needs parameter {key} "
                              f"(--param {key}=...)")

    def floats(self, key, n=None):
        """A list of floats (exactly ``n`` of them when given)."""
        values = self.raw[key]
        try:
            out = [float(v) for v in values]
        except ValueError:
            raise self._err(key, "a number" if n == 1 else "numbers", values) from None
        if n is not None and len(out) != n:
            raise self._err(key, f"{n} number{'s' if n > 1 else ''}", values)
        return out

    def float(self, key, default=None):
        return self.floats(key, 1)[0] if key in self.raw else default

    def int(self, key, default=None, minimum=None):
        if key not in self.raw:
            return default
        values = self.raw[key]
        expected = "an integer" + (f" >= {minimum}" if minimum is not None else "")
        try:
            (value,) = values
            out = int(value)
        except ValueError:
            raise self._err(key, expected, values) from None
        if minimum is not None and out < minimum:
            raise self._err(key, expected, values)
        return out

    def bool(self, key, default=False):
        if key not in self.raw:
            return default
        values = self.raw[key]
        word = values[0].lower() if len(values) == 1 else None
        if word in ("true", "yes", "1", "on"):
            return True
        if word in ("false", "no", "0", "off"):
            return False
        raise self._err(key, "true or false", values)

    def choice(self, key, choices, default=None):
        if key not in self.raw:
            return default
        values = self.raw[key]
        if len(values) != 1 or values[0] not in choices:
            raise self._err(key, "one of " + "|".join(choices), values)
        return values[0]

    def text(self, key):
        values = self.raw[key]
        if len(values) != 1 or not values[0]:
            raise self._err(key, "one value", values)
        return values[0]

    def number_or_text(self, key):
        """A float when the value parses as one, else the text (a duration such as '1h')."""
        text = self.text(key)
        try:
            return float(text)
        except ValueError:
            return text


# --------------------------------------------------------------------------- filters

class _Stream:
    """Filters consecutive chunks ``(columns, rows)`` along the last axis, carrying state."""

    uses_times = False

    def __call__(self, x, times):  # pragma: no cover - abstract
        raise NotImplementedError


class _EMA(_Stream):
    uses_times = True

    def __init__(self, p: _Params, times_given: bool):
        kw: dict[str, Any] = {}
        for key in ("alpha", "com", "span"):
            if p.has(key):
                kw[key] = p.float(key)
        if p.has("halflife"):
            kw["halflife"] = p.number_or_text("halflife") if times_given else p.float(
                "halflife")
        kw["adjust"] = p.bool("adjust", False)
        kw["ignore_na"] = p.bool("ignore_na", False)
        kw["min_periods"] = p.int("min_periods", 0, minimum=0)
        self.kw = kw
        self.state = None

    def __call__(self, x, times):
        import iirssm

        y, self.state = iirssm.ema(x, times=times, zi=self.state, return_zf=True, **self.kw)
        return y


def _steady(zi_unit, x0):
    """Steady-state initial conditions for first values ``x0`` (missing ones count as 0)."""
    return zi_unit * np.where(np.isfinite(x0), x0, 0.0)


class _LFilter(_Stream):
    def __init__(self, b, a, initial):
        self.b, self.a, self.initial = np.asarray(b, float), np.asarray(a, float), initial
        self.zi = None

    def __call__(self, x, times):
        import iirssm

        if self.zi is None:
            K = max(self.a.size, self.b.size) - 1
            if self.initial == "steady":
                self.zi = _steady(iirssm.lfilter_zi(self.b, self.a)[None, :], x[:, :1])
            else:
                self.zi = np.zeros((x.shape[0], K))
        y, self.zi = iirssm.lfilter(self.b, self.a, x, axis=-1, zi=self.zi)
        return y


class _SOS(_Stream):
    def __init__(self, sos, initial):
        self.sos, self.initial = sos, initial
        self.zi = None

    def __call__(self, x, times):
        import iirssm

        if self.zi is None:
            if self.initial == "steady":
                self.zi = _steady(iirssm.sosfilt_zi(self.sos)[:, None, :], x[None, :, :1])
            else:
                self.zi = np.zeros((self.sos.shape[0], x.shape[0], 2))
        y, self.zi = iirssm.sosfilt(self.sos, x, axis=-1, zi=self.zi)
        return y


class _Recurrence(_Stream):
    def __init__(self, a):
        self.a = np.asarray(a, float)
        self.zi = None

    def __call__(self, x, times):
        import iirssm

        a = self.a if self.a.size == 1 else self.a[:, None]
        if self.a.size not in (1, x.shape[0]):
            raise FilterError(f"--filter recurrence: a must be one value or one per filtered "
                              f"column ({x.shape[0]}); got {self.a.size}")
        y, self.zi = iirssm.linear_recurrence(a, x, zi=self.zi, return_zf=True)
        return y


class _Selective(_Stream):
    def __init__(self, path):
        import iirssm

        try:
            self.model = iirssm.SelectiveSSM.load(path)
        except FileNotFoundError:
            raise FilterError(f"--filter selective: model file {path} does not exist") from None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise FilterError(f"--filter selective: cannot load the model {path}: "
                              f"{_one_line(exc)}") from None
        self.state = None

    def __call__(self, x, times):
        if x.shape[0] != self.model.dim:
            raise FilterError(f"--filter selective: the model has {self.model.dim} channels "
                              f"but {x.shape[0]} column(s) are filtered; choose "
                              f"{self.model.dim} with --columns")
        y, self.state = self.model.filter(x[None], initial_state=self.state,
                                          return_last_state=True)
        return y[0]


def _load_sos(path):
    p = Path(path)
    if not p.is_file():
        raise FilterError(f"--filter sos: coefficient file {path} does not exist")
    try:
        sos = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, delimiter=",", ndmin=2)
    except (OSError, ValueError) as exc:
        raise FilterError(f"--filter sos: cannot read {path}: {_one_line(exc)}") from None
    return sos


def _design(name, p: _Params):
    import scipy.signal

    p.required("order")
    p.required("cutoff")
    order = p.int("order", minimum=1)
    cutoff = p.floats("cutoff")
    if len(cutoff) not in (1, 2):
        raise p._err("cutoff", "one frequency, or two for a band filter", p.raw["cutoff"])
    wn = cutoff[0] if len(cutoff) == 1 else cutoff
    btype = p.choice("btype", ("low", "high", "bandpass", "bandstop", "lowpass", "highpass",
                               "band"), "low")
    kw: dict[str, Any] = {"btype": btype, "output": "sos", "fs": p.float("fs")}
    args: list[Any] = [order]
    if name in ("cheby1", "ellip"):
        p.required("rp")
        args.append(p.float("rp"))
    if name in ("cheby2", "ellip"):
        p.required("rs")
        args.append(p.float("rs"))
    if name == "bessel":
        kw["norm"] = p.choice("norm", ("phase", "delay", "mag"), "phase")
    try:
        return getattr(scipy.signal, name)(*args, wn, **kw)
    except (ValueError, TypeError) as exc:
        raise FilterError(f"--filter {name}: {_one_line(exc)}") from None


_ALLOWED = {
    "ema": ("alpha", "com", "span", "halflife", "adjust", "ignore_na", "min_periods"),
    "lfilter": ("b", "a"),
    "sos": ("sos", "file"),
    "butter": ("order", "cutoff", "btype", "fs"),
    "cheby1": ("order", "cutoff", "btype", "fs", "rp"),
    "cheby2": ("order", "cutoff", "btype", "fs", "rs"),
    "ellip": ("order", "cutoff", "btype", "fs", "rp", "rs"),
    "bessel": ("order", "cutoff", "btype", "fs", "norm"),
    "recurrence": ("a",),
    "selective": ("file",),
}


def make_filter(name, raw_params, *, times_given=False, initial="zero"):
    """Build the streaming filter ``name`` from parsed ``--param`` values."""
    if name not in _ALLOWED:
        raise FilterError(f"unknown filter {name!r}; choose one of {', '.join(FILTERS)}")
    p = _Params(name, raw_params, _ALLOWED[name])
    if name == "ema":
        return _EMA(p, times_given)
    if name == "lfilter":
        p.required("b")
        return _LFilter(p.floats("b"), p.floats("a") if p.has("a") else [1.0], initial)
    if name == "sos":
        if p.has("sos") == p.has("file"):
            raise FilterError("--filter sos needs exactly one of sos=... (6 numbers per "
                              "section) or file=PATH")
        if p.has("file"):
            sos = _load_sos(p.text("file"))
        else:
            flat = p.floats("sos")
            if len(flat) % 6:
                raise p._err("sos", "6 numbers per section", p.raw["sos"])
            sos = np.reshape(flat, (-1, 6))
        sos = np.asarray(sos, dtype=float)
        if sos.ndim != 2 or sos.shape[1] != 6 or sos.shape[0] == 0:
            raise FilterError(f"--filter sos: the sections must have shape (n_sections, 6); "
                              f"got {sos.shape}")
        return _SOS(sos, initial)
    if name in DESIGNS:
        return _SOS(_design(name, p), initial)
    if name == "recurrence":
        p.required("a")
        return _Recurrence(p.floats("a"))
    p.required("file")
    return _Selective(p.text("file"))


# --------------------------------------------------------------------------- helpers

def _one_line(exc):
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def _need(module, what):
    try:
        return __import__(module)
    except ImportError:
        raise FilterError(f"{what} needs {module}: pip install iirssm[io]") from None


def format_of(path, given, role):
    """The format of ``path``: ``given`` if set, else from its extension."""
    if given:
        return given
    fmt = EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None:
        raise FilterError(f"cannot tell the format of {role} {os.fspath(path)!r} from its "
                          f"extension; use a .csv, .parquet, .pq or .npy file, or "
                          f"--{'format' if role == 'input' else 'output-format'} "
                          f"{{{','.join(FORMATS)}}}")
    return fmt


class _Times:
    """Turns a time column into ``times=`` values: numbers or datetime64."""

    def __init__(self, name):
        self.name = name
        self.kind = None      # "number" or "datetime", decided on the first chunk
        self.format = None

    def __call__(self, col):
        if isinstance(col, np.ndarray):
            if col.dtype.kind in "iuf":
                return col.astype(np.float64)
            if col.dtype.kind == "M":
                return col
            raise FilterError(f"time column {self.name!r} has dtype {col.dtype}; expected "
                              "numbers or date/times")
        if not hasattr(col, "str"):          # a pyarrow array
            import pyarrow as pa

            t = col.type
            if pa.types.is_timestamp(t) or pa.types.is_date(t):
                unit = t.unit if pa.types.is_timestamp(t) else "s"
                return col.cast(pa.timestamp(unit)).to_numpy(zero_copy_only=False)
            if pa.types.is_integer(t) or pa.types.is_floating(t):
                return col.to_numpy(zero_copy_only=False).astype(np.float64)
            if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
                raise FilterError(f"time column {self.name!r} has type {t}; expected numbers "
                                  "or date/times")
            col = col.to_pandas()
        return self._parse_text(col)

    def _parse_text(self, col):
        import pandas as pd

        if self.kind is None:
            try:
                pd.to_numeric(col)
                self.kind = "number"
            except (ValueError, TypeError):
                self.kind = "datetime"
                first = col.dropna()
                first = first[first != ""]
                if len(first):
                    from pandas.tseries.api import guess_datetime_format

                    self.format = guess_datetime_format(str(first.iloc[0])) or "mixed"
        try:
            if self.kind == "number":
                return pd.to_numeric(col).to_numpy(dtype=np.float64)
            # utc=True: offsets (which change with daylight saving) become UTC; naive
            # times are taken as they are
            t = pd.to_datetime(col, format=self.format or "mixed", utc=True)
        except (ValueError, TypeError) as exc:
            what = "numbers" if self.kind == "number" else "date/times"
            raise FilterError(f"time column {self.name!r}: cannot read the values as {what}: "
                              f"{_one_line(exc)}") from None
        return t.dt.tz_localize(None).to_numpy()


# --------------------------------------------------------------------------- readers

class _Source:
    """A table read in chunks: ``columns`` (names), ``numeric`` (default filter columns)."""

    columns: list[str]
    numeric: list[str]
    total: float = 0.0          # progress: total units (bytes or rows)
    unit = "rows"

    def done(self) -> float:   # pragma: no cover - abstract
        return 0.0

    def chunks(self, rows, filtered):   # pragma: no cover - abstract
        raise NotImplementedError

    def values(self, chunk, name):      # pragma: no cover - abstract
        raise NotImplementedError

    def close(self):
        pass


class _CSVSource(_Source):
    unit = "bytes"

    def __init__(self, path, sep):
        self.pd = _need("pandas", "reading CSV")
        self.path, self.sep = path, sep
        try:
            sample = self.pd.read_csv(path, sep=sep, nrows=1000)
        except self.pd.errors.EmptyDataError:
            raise FilterError(f"input {os.fspath(path)!r} is empty (no header row)") from None
        except (ValueError, UnicodeDecodeError, self.pd.errors.ParserError) as exc:
            raise FilterError(f"cannot read {os.fspath(path)!r} as CSV: "
                              f"{_one_line(exc)}") from None
        self.columns = [str(c) for c in sample.columns]
        self.numeric = [str(c) for c in sample.columns if sample[c].dtype.kind in "iuf"]
        self.total = float(os.path.getsize(path))
        self._handle = None

    def done(self):
        try:
            return float(self._handle.tell()) if self._handle is not None else 0.0
        except (OSError, ValueError):
            return 0.0

    def chunks(self, rows, filtered):
        pd = self.pd
        keep = [c for c in self.columns if c not in filtered]
        self._handle = open(self.path, "rb")  # noqa: SIM115  # closed in close()
        reader = pd.read_csv(self._handle, sep=self.sep, chunksize=rows,
                             dtype={c: str for c in keep}, keep_default_na=False,
                             na_values={c: NA_STRINGS for c in filtered})
        seen = False
        try:
            for chunk in reader:
                seen = True
                yield chunk
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise FilterError(f"cannot read {os.fspath(self.path)!r} as CSV: "
                              f"{_one_line(exc)}") from None
        if not seen:
            yield pd.DataFrame({c: pd.Series([], dtype=object if c in keep else float)
                                for c in self.columns})

    def values(self, chunk, name):
        col = chunk[name]
        if col.dtype.kind in "iufb":
            return col.to_numpy(dtype=np.float64)
        pd = self.pd
        num = pd.to_numeric(col, errors="coerce")
        bad = num.isna() & col.notna()
        if bad.any():
            row = bad.to_numpy().argmax()
            raise FilterError(f"column {name!r}: value {col.iloc[row]!r} in data row "
                              f"{int(col.index[row]) + 1} is not a number")
        return num.to_numpy(dtype=np.float64)

    def passthrough(self, chunk, name):
        return chunk[name].reset_index(drop=True)

    def close(self):
        if self._handle is not None:
            self._handle.close()


class _ParquetSource(_Source):
    def __init__(self, path):
        _need("pyarrow", "reading Parquet")
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        try:
            self.file = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as exc:
            raise FilterError(f"cannot read {os.fspath(path)!r} as Parquet: "
                              f"{_one_line(exc)}") from None
        schema = self.file.schema_arrow
        self.schema = schema
        self.columns = list(schema.names)
        self.numeric = [f.name for f in schema if pa.types.is_integer(f.type)
                        or pa.types.is_floating(f.type)]
        self.total = float(self.file.metadata.num_rows)
        self._done = 0

    def done(self):
        return float(self._done)

    def chunks(self, rows, filtered):
        pa = self.pa
        seen = False
        try:
            for batch in self.file.iter_batches(batch_size=rows):
                seen = True
                self._done += batch.num_rows
                yield batch
        except pa.ArrowException as exc:
            raise FilterError(f"cannot read {self.file!r} as Parquet: {_one_line(exc)}") \
                from None
        if not seen:
            yield pa.RecordBatch.from_arrays([pa.array([], type=f.type) for f in self.schema],
                                             schema=self.schema)

    def values(self, chunk, name):
        pa = self.pa
        col = chunk.column(name)
        t = col.type
        if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
            raise FilterError(f"column {name!r} has type {t}; only numeric columns can be "
                              "filtered")
        arr = col.to_numpy(zero_copy_only=False)
        return arr if arr.dtype == np.float32 else arr.astype(np.float64)

    def passthrough(self, chunk, name):
        return chunk.column(name)


class _NpySource(_Source):
    def __init__(self, path):
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise FilterError(f"cannot read {os.fspath(path)!r} as .npy: "
                              f"{_one_line(exc)}") from None
        if arr.ndim not in (1, 2):
            raise FilterError(f".npy input must be 1-D (one signal) or 2-D (rows are samples, "
                              f"columns are signals); got shape {arr.shape}")
        if arr.dtype.kind not in "iufb":
            raise FilterError(f".npy input must hold real numbers; got dtype {arr.dtype}")
        self.arr = arr
        self.one_d = arr.ndim == 1
        n = 1 if self.one_d else arr.shape[1]
        self.columns = [str(i) for i in range(n)]
        self.numeric = list(self.columns)
        self.total = float(arr.shape[0])
        self._done = 0

    def done(self):
        return float(self._done)

    def chunks(self, rows, filtered):
        L = self.arr.shape[0]
        for start in range(0, max(L, 1), rows):
            part = np.array(self.arr[start:start + rows])
            self._done = start + part.shape[0]
            yield part if not self.one_d else part[:, None]

    def values(self, chunk, name):
        col = chunk[:, int(name)]
        return col if col.dtype.kind == "f" else col.astype(np.float64)

    def passthrough(self, chunk, name):
        return chunk[:, int(name)]


# --------------------------------------------------------------------------- writers

class _CSVSink:
    def __init__(self, path, names, sep, float_format):
        self.pd = _need("pandas", "writing CSV")
        self.names, self.sep, self.float_format = names, sep, float_format
        self.f = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self.header = True

    def write(self, cols, n):
        pd = self.pd
        data = {}
        for name in self.names:
            col = cols[name]
            if not isinstance(col, (np.ndarray, pd.Series)):       # pyarrow
                col = col.to_pandas()
            data[name] = col
        frame = pd.DataFrame(data, index=pd.RangeIndex(n), columns=self.names)
        frame.to_csv(self.f, sep=self.sep, index=False, header=self.header,
                     float_format=self.float_format, lineterminator="\n")
        self.header = False

    def close(self):
        self.f.close()


class _ParquetSink:
    def __init__(self, path, names):
        _need("pyarrow", "writing Parquet")
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa, self.pq = pa, pq
        self.path, self.names = path, names
        self.writer = None

    def _array(self, col):
        pa = self.pa
        if isinstance(col, np.ndarray):
            return pa.array(np.ascontiguousarray(col))
        if isinstance(col, (pa.Array, pa.ChunkedArray)):
            return col
        if col.dtype == object:                                    # pandas strings
            return pa.array(col, type=pa.string(), from_pandas=True)
        return pa.array(col, from_pandas=True)

    def write(self, cols, n):
        pa = self.pa
        table = pa.table({name: self._array(cols[name]) for name in self.names})
        if self.writer is None:
            self.writer = self.pq.ParquetWriter(self.path, table.schema)
        elif table.schema != self.writer.schema:
            try:
                table = table.cast(self.writer.schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise FilterError(f"the columns' types change between chunks "
                                  f"({_one_line(exc)}); use a larger --chunksize or CSV "
                                  "output") from None
        self.writer.write_table(table)

    def close(self):
        if self.writer is not None:
            self.writer.close()


class _NpySink:
    """Writes a ``.npy`` file row block by row block; the header is fixed up at the end."""

    MAGIC = b"\x93NUMPY\x01\x00"

    def __init__(self, path, names, one_d, dtypes):
        self.names, self.one_d = names, one_d
        self.dtype = np.result_type(*dtypes) if dtypes else np.dtype(np.float64)
        self.f = open(path, "wb")  # noqa: SIM115
        self.rows = 0
        # reserve room for the largest row count, so the final header fits in place
        self.size = len(self._header(10 ** 19))
        self.f.write(self._header(0, self.size))

    def _header(self, rows, size=None):
        shape = (rows,) if self.one_d else (rows, len(self.names))
        text = repr({"descr": np.lib.format.dtype_to_descr(self.dtype),
                     "fortran_order": False, "shape": shape})
        if size is None:
            size = -(-(len(self.MAGIC) + 2 + len(text) + 1) // 64) * 64
        text = text.ljust(size - len(self.MAGIC) - 2 - 1) + "\n"
        return self.MAGIC + len(text).to_bytes(2, "little") + text.encode("latin1")

    def write(self, cols, n):
        block = np.empty((n, len(self.names)), dtype=self.dtype)
        for j, name in enumerate(self.names):
            col = cols[name]
            if not isinstance(col, np.ndarray):
                col = self._numeric(col, name)
            block[:, j] = col
        self.f.write(block.tobytes())
        self.rows += n

    def _numeric(self, col, name):
        if hasattr(col, "str"):                                  # pandas strings
            import pandas as pd

            try:
                return pd.to_numeric(col).to_numpy(dtype=np.float64)
            except (ValueError, TypeError):
                pass
        else:                                                    # pyarrow
            arr = col.to_numpy(zero_copy_only=False)
            if arr.dtype.kind in "iufb":
                return arr
        raise FilterError(f"column {name!r} is not numeric; .npy output holds numbers only "
                          "(choose CSV or Parquet output)")

    def close(self):
        if not self.f.closed:
            self.f.seek(0)
            self.f.write(self._header(self.rows, self.size))
            self.f.close()


# --------------------------------------------------------------------------- progress

class Progress:
    """A one-line progress bar on a terminal stream (nothing when ``enabled`` is False)."""

    WIDTH = 30

    def __init__(self, total, unit, stream, enabled, label="iirssm filter"):
        self.total, self.unit, self.stream, self.enabled = total, unit, stream, enabled
        self.label = label
        self.start = time.perf_counter()
        self.last = -1.0
        self.drawn = False

    @staticmethod
    def _amount(value, unit):
        if unit == "bytes":
            for size, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
                if value >= size:
                    return f"{value / size:.1f} {suffix}"
            return f"{value:.0f} B"
        return f"{value:,.0f} rows"

    def update(self, done, force=False):
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        frac = min(1.0, done / self.total) if self.total > 0 else 1.0
        filled = int(round(frac * self.WIDTH))
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = (f"\r{self.label} [{bar}] {100 * frac:5.1f}% "
                f"{self._amount(done, self.unit)} / {self._amount(self.total, self.unit)} "
                f"{now - self.start:6.1f} s")
        self.stream.write(line)
        self.stream.flush()
        self.drawn = True

    def close(self, done=None):
        if self.enabled and self.drawn:
            self.update(self.total if done is None else done, force=True)
            self.stream.write("\n")
            self.stream.flush()


# --------------------------------------------------------------------------- output file

class _AtomicPath:
    """A temporary path beside ``target``, renamed over it by :meth:`commit`."""

    def __init__(self, target: Path):
        parent = target.parent
        if target.is_dir():
            raise FilterError(f"output {os.fspath(target)!r} is a directory")
        if not parent.is_dir():
            raise FilterError(f"output directory {os.fspath(parent)!r} does not exist")
        try:
            fd, name = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".part")
        except OSError as exc:
            raise FilterError(f"cannot write in {os.fspath(parent)!r}: "
                              f"{exc.strerror or exc}") from None
        os.close(fd)
        self.target, self.tmp = target, Path(name)

    def commit(self):
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(self.tmp, 0o666 & ~mask)
        os.replace(self.tmp, self.target)

    def discard(self):
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------- the command

def _split_names(values):
    out = []
    for v in values or ():
        out += [c.strip() for c in v.split(",") if c.strip()]
    return out


def _open_source(path, fmt, sep):
    if not path.exists():
        raise FilterError(f"input file {os.fspath(path)!r} does not exist")
    if path.is_dir():
        raise FilterError(f"input {os.fspath(path)!r} is a directory, not a file")
    if fmt == "csv":
        return _CSVSource(path, sep)
    if fmt == "parquet":
        return _ParquetSource(path)
    return _NpySource(path)


def _check_column(name, source, role, path):
    if name not in source.columns:
        shown = ", ".join(source.columns[:20]) + (" ..." if len(source.columns) > 20 else "")
        raise FilterError(f"{role} {name!r} is not a column of {os.fspath(path)!r} "
                          f"(columns: {shown})")


def filter_file(args, stderr=None):
    """Run ``iirssm filter`` for parsed arguments; raises :class:`FilterError`."""
    stderr = sys.stderr if stderr is None else stderr
    src_path, out_path = Path(args.input), Path(args.output)
    in_fmt = format_of(src_path, args.format, "input")
    out_fmt = format_of(out_path, args.output_format, "output")
    if args.chunksize is not None and args.chunksize < 1:
        raise FilterError(f"--chunksize must be a positive number of rows; got {args.chunksize}")
    times_given = args.time_column is not None
    stream = make_filter(args.filter, parse_params(args.param or []), times_given=times_given,
                         initial=args.initial)
    source = _open_source(src_path, in_fmt, args.sep)
    try:
        _run(args, source, stream, src_path, out_path, out_fmt, stderr)
    finally:
        source.close()


def _run(args, source, stream, src_path, out_path, out_fmt, stderr):
    time_col = args.time_column
    if time_col is not None:
        _check_column(time_col, source, "--time-column", src_path)
    chosen = _split_names(args.columns)
    if chosen:
        for c in chosen:
            _check_column(c, source, "--columns", src_path)
        if time_col in chosen:
            raise FilterError(f"column {time_col!r} is the --time-column; it cannot also be "
                              "filtered")
        if len(set(chosen)) != len(chosen):
            raise FilterError(f"--columns names a column twice: {','.join(chosen)}")
    else:
        chosen = [c for c in source.numeric if c != time_col]
        if not chosen:
            raise FilterError(f"{os.fspath(src_path)!r} has no numeric column to filter; "
                              "choose columns with --columns")
    suffix = args.suffix or ""
    names = list(source.columns) + ([c + suffix for c in chosen] if suffix else [])
    if suffix:
        clash = [c + suffix for c in chosen if c + suffix in source.columns]
        if clash:
            raise FilterError(f"--suffix {suffix!r}: column(s) {', '.join(clash)} already "
                              "exist")
    if out_fmt == "npy" and isinstance(source, _NpySource):
        one_d = source.one_d and len(names) == 1
    else:
        one_d = False
    times = _Times(time_col) if time_col is not None else None
    rows = args.chunksize or max(MIN_ROWS, CHUNK_VALUES // max(1, len(source.columns)))
    filtered = set(chosen) if not suffix else set()
    filtered_in = set(chosen)

    target = _AtomicPath(out_path)
    progress = Progress(source.total, source.unit, stderr,
                        stderr.isatty() if args.progress is None else args.progress)
    sink = None
    ok = False
    try:
        for chunk in source.chunks(rows, filtered_in):
            x_cols = [source.values(chunk, c) for c in chosen]
            n = x_cols[0].shape[0]
            dtype = np.result_type(*(c.dtype for c in x_cols))
            x = np.empty((len(chosen), n), dtype=dtype)
            for j, col in enumerate(x_cols):
                x[j] = col
            if n:
                t = times(source.passthrough(chunk, time_col)) \
                    if (times is not None and stream.uses_times) else None
                try:
                    y = stream(x, t)
                except (ValueError, TypeError) as exc:
                    where = (f" (--time-column {time_col!r})"
                             if t is not None and "times" in str(exc) else "")
                    raise FilterError(f"--filter {args.filter}: {_one_line(exc)}{where}") \
                        from None
            else:
                y = x
            cols = {c: source.passthrough(chunk, c) for c in source.columns if c not in filtered}
            for j, c in enumerate(chosen):
                cols[c + suffix] = y[j]
            if sink is None:
                sink = _make_sink(out_fmt, target.tmp, names, one_d, args, source, y.dtype,
                                  filtered)
            sink.write(cols, n)
            progress.update(source.done())
        sink.close()
        ok = True
    except OSError as exc:
        raise FilterError(f"cannot write {os.fspath(out_path)!r}: {exc.strerror or exc}") \
            from None
    finally:
        progress.close(source.done() if ok else None)
        if not ok:
            if sink is not None:
                try:
                    sink.close()
                except Exception:  # noqa: BLE001  # the first error is the one to report
                    pass
            target.discard()
    try:
        target.commit()
    except OSError as exc:
        target.discard()
        raise FilterError(f"cannot write {os.fspath(out_path)!r}: {exc.strerror or exc}") \
            from None


def _make_sink(fmt, tmp, names, one_d, args, source, ydtype, filtered):
    if fmt == "csv":
        return _CSVSink(tmp, names, args.sep, args.float_format)
    if fmt == "parquet":
        return _ParquetSink(tmp, names)
    if isinstance(source, _NpySource):
        dtypes = [ydtype] + ([source.arr.dtype] if len(filtered) < len(source.columns) else [])
    else:
        dtypes = [ydtype, np.float64]
    return _NpySink(tmp, names, one_d, dtypes)


def run(args) -> int:
    """The ``filter`` subcommand: 0 on success, 2 with a one-line error on stderr."""
    try:
        filter_file(args)
    except FilterError as exc:
        print(f"iirssm filter: error: {exc}", file=sys.stderr)
        return 2
    return 0


def add_parser(commands):
    """Add the ``filter`` subcommand to an argparse sub-parsers object."""
    p = commands.add_parser(
        "filter",
        help="filter columns of a CSV, Parquet or .npy file, streaming in chunks",
        description=textwrap.fill("Filter columns of a CSV, Parquet or .npy file with one of iirssm's "
        "filters and write the result, reading and writing in chunks of rows with the "
        "filter's state carried across chunks (the output equals filtering the whole file "
        "at once). Columns that are not filtered are written back unchanged. The output "
        "appears only when everything succeeded.", 79),
        epilog=FILTER_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", type=Path, metavar="INPUT", help="the file to read")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUTPUT",
                   help="the file to write (replaced if it exists)")
    p.add_argument("-f", "--filter", required=True, metavar="NAME",
                   help=f"the filter: {', '.join(FILTERS)} (see below)")
    p.add_argument("-p", "--param", action="append", metavar="KEY=VALUE",
                   help="a parameter of the filter (repeatable; see below)")
    p.add_argument("-c", "--columns", action="append", metavar="A,B",
                   help="the columns to filter (default: every numeric column except the "
                   "time column); for .npy input, column numbers")
    p.add_argument("-t", "--time-column", metavar="NAME",
                   help="a column of time stamps (numbers or date/times): ema uses them as "
                   "times=; it is never filtered and is written back unchanged")
    p.add_argument("--suffix", metavar="SUFFIX",
                   help="keep the original columns and append the filtered ones as "
                   "NAME+SUFFIX (default: replace them)")
    p.add_argument("--initial", choices=("zero", "steady"), default="zero",
                   help="initial state of lfilter, sos and the designs: at rest (default) or "
                   "in the steady state of the first value")
    p.add_argument("--chunksize", type=int, metavar="ROWS",
                   help=f"rows per chunk (default: about {CHUNK_VALUES:,} values per chunk)")
    p.add_argument("--format", choices=FORMATS,
                   help="format of INPUT (default: from its extension)")
    p.add_argument("--output-format", choices=FORMATS,
                   help="format of OUTPUT (default: from its extension)")
    p.add_argument("--sep", default=",", help="CSV field separator (default: %(default)r)")
    p.add_argument("--float-format", metavar="FMT",
                   help="CSV number format, e.g. %%.6g (default: shortest exact)")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show a progress bar on stderr (default: when it is a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false",
                     help="never show a progress bar")
    p.set_defaults(func=run)
    return p
