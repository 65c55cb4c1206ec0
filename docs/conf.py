"""Sphinx configuration for iirssm's documentation.

Build from the repository root (needs the ``docs`` extra, ``pip install -e .[docs]``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

or ``make -C docs html``. The guides are Markdown (MyST), the API reference is
generated from the numpydoc docstrings (autosummary stubs in ``docs/generated/``),
and the scripts in ``examples/`` are run and rendered as a gallery in
``docs/auto_examples/`` (sphinx-gallery). All three output folders are build
products, not sources.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))          # document the checkout, not an installed copy
os.environ.setdefault("MPLBACKEND", "Agg")

import iirssm  # noqa: E402

project = "iirssm"
author = "iirssm developers"
copyright = "iirssm developers"  # noqa: A001
version = release = iirssm.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "auto_examples/*.ipynb",
                    "auto_examples/*.py", "auto_examples/*.zip", "auto_examples/*.json",
                    "auto_examples/*.md5"]

# --- API reference: autosummary stubs + numpydoc ------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": False}
autodoc_typehints = "none"             # numpydoc's Parameters sections say it
numpydoc_show_class_members = False    # the class template lists the members instead
numpydoc_class_members_toctree = False

# --- Markdown guides ----------------------------------------------------------------------
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]   # the guides start at h1 and may skip to h3

# --- examples gallery ---------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": str(DOCS / "auto_examples"),
    # The dask example measures its own process's peak memory: inside the Sphinx
    # process that measure means nothing, so the gallery shows it without running it.
    "filename_pattern": r"/plot_(?!dask_larger_than_memory)",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "write_computation_times": False,
}

# --- HTML ---------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"iirssm {release}"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_static_path: list[str] = []
