"""Collection rules shared by the test suite and the doctests of the package.

Modules that need an optional package are skipped (not failed) where that
package is missing, so ``pytest`` runs on a minimal install too; ``.[test]``
installs them all.
"""

import importlib.util

collect_ignore = []
for module, needs in [("iirssm/sklearn.py", "sklearn"), ("iirssm/dask.py", "dask")]:
    if importlib.util.find_spec(needs) is None:
        collect_ignore.append(module)
