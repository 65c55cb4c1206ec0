"""pandas in, pandas out, without importing pandas.

pandas is optional: these helpers recognise pandas objects by their type's
module, so ``import iirssm`` never imports pandas.
"""

from __future__ import annotations

import numpy as np

__all__ = ["is_pandas", "unwrap", "rewrap", "pandas_axis"]


def is_pandas(obj) -> bool:
    """True for a pandas Series, DataFrame or Index (checked without importing pandas)."""
    mod = type(obj).__module__ or ""
    return (mod == "pandas" or mod.startswith("pandas.")) and hasattr(obj, "to_numpy")


def unwrap(x, name: str = "x"):
    """Return ``(array, template)``; ``template`` is the pandas object or None.

    A DataFrame filters each column along its index (time is axis 0).
    """
    if is_pandas(x) and x.__class__.__name__ in ("Series", "DataFrame"):
        arr = x.to_numpy()
        if arr.dtype == object:
            raise TypeError(f"{name} has object dtype (mixed or non-numeric columns); "
                            "select numeric columns first")
        return arr, x
    return x, None


def rewrap(y: np.ndarray, template):
    """Give ``y`` the index (and columns, name) of the pandas ``template``."""
    if template is None:
        return y
    cls = template.__class__
    if cls.__name__ == "Series":
        return cls(y, index=template.index, name=template.name, copy=False)
    return cls(y, index=template.index, columns=template.columns, copy=False)


def pandas_axis(template, axis):
    """pandas objects run along their index: ``axis`` must be 0 or the default -1."""
    if template is None:
        return axis
    if axis not in (0, -1):
        raise ValueError(f"pandas objects are filtered along their index (axis 0); got axis={axis}."
                         " Transpose the DataFrame to filter across columns.")
    return 0
