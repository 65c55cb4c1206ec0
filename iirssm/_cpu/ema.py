"""The exact pandas ``ewm(...).mean()`` state machine, for signals with missing values.

Signals without NaN run on the fast EMA scan (``recurrence.py``); signals in
which a NaN appears are re-run here. The state per signal is pandas' own:
``mean`` (pandas' ``weighted``, NaN before the first observation), ``weight``
(``old_wt``) and ``count`` (``nobs``). Per step ``t``:

* ``d[t]``: the decay of ``weight`` for one step (``1 - alpha``, or
  ``(1 - alpha) ** (dt / halflife)`` with ``times=``);
* ``x[t]`` NaN or +-inf is a missing value (pandas turns inf into NaN first);
* ``al[t]``: the weight of a new observation when ``adjust=False``; where it is
  exactly 0.5 (pandas' ``com == 1`` path) the new weight is ``1 - weight``
  instead, which is what makes the ``times=`` form an irregular-time EMA.

See ``docs/ema.md`` for how this maps onto pandas' implementation.
"""

import numpy as np

from ._jit import kernel, prange

__all__ = ["ewm_state"]


@kernel(writes=("out",))
def ewm_state(d, al, x, mean0, wt0, cnt0, mask, out, adjust, ignore_na, minp):
    """Run the pandas ewm-mean state machine on the signals where ``mask`` is True.

    ``d``, ``al``: ``(Pc, Lc, Qc)`` coefficient arrays; ``x``, ``out``: ``(P, L, Q)``;
    ``mean0``, ``wt0``, ``cnt0``, ``mask``: ``(P, Q)``. Returns the final
    ``(mean, weight, count)``; entries outside ``mask`` are copies of the inputs.
    """
    P, L, Q = x.shape
    dp = 1 if d.shape[0] > 1 else 0
    dt = 1 if d.shape[1] > 1 else 0
    dq = 1 if d.shape[2] > 1 else 0
    ap = 1 if al.shape[0] > 1 else 0
    at = 1 if al.shape[1] > 1 else 0
    aq = 1 if al.shape[2] > 1 else 0
    mean_f = mean0.copy()
    wt_f = wt0.copy()
    cnt_f = cnt0.copy()
    nan = np.nan
    for job in prange(P * Q):
        p = job // Q
        q = job % Q
        if not mask[p, q]:
            continue
        weighted = mean0[p, q]
        old_wt = wt0[p, q]
        nobs = cnt0[p, q]
        for t in range(L):
            cur = x[p, t, q]
            is_obs = abs(cur) < np.inf      # pandas treats +-inf as missing, like NaN
            if is_obs:
                nobs += 1
            if weighted == weighted:
                if is_obs or not ignore_na:
                    old_wt = old_wt * d[p * dp, t * dt, q * dq]
                    if is_obs:
                        if adjust:
                            new_wt = 1.0
                        else:
                            a_t = al[p * ap, t * at, q * aq]
                            new_wt = 1.0 - old_wt if a_t == 0.5 else a_t
                        if weighted != cur:
                            weighted = (old_wt * weighted + new_wt * cur) / (old_wt + new_wt)
                        if adjust:
                            old_wt = old_wt + new_wt
                        else:
                            old_wt = 1.0
            elif is_obs:
                weighted = cur
            if nobs >= minp:
                out[p, t, q] = weighted
            else:
                out[p, t, q] = nan
        mean_f[p, q] = weighted
        wt_f[p, q] = old_wt
        cnt_f[p, q] = nobs
    return mean_f, wt_f, cnt_f
