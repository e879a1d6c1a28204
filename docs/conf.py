"""Sphinx configuration for the softmax-dispatch documentation site.

Build it (offline, warnings as errors) with::

    pip install -e '.[docs]'
    sphinx-build -W --keep-going -n -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import softmax_dispatch  # noqa: E402

project = "softmax-dispatch"
author = "The softmax-dispatch contributors"
copyright = "2026, The softmax-dispatch contributors"
release = softmax_dispatch.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinxarg.ext",
    "sd_docs",  # docs/_ext/sd_docs.py: executed examples, bench tables and plots, MathJax
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]
nitpicky = True
# Annotations that name other libraries' types: there is no network, so no intersphinx
# inventories to resolve them against; they are shown as text.
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|collections|typing|types|array_api_compat|pluggy|argparse)(\..*)?"),
    (r"py:.*", r"(Any|Callable|Iterable|Iterator|Mapping|Sequence|ModuleType|Self)"),
    (r"py:.*", r"PluginManager(\..*)?"),
]

myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_member_order = "bysource"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
# Every public name documents its parameters, return value and an example: the build
# fails (warnings are errors) where one does not.
numpydoc_validation_checks = {"GL08", "PR01", "PR02", "PR07", "RT01", "EX01"}
numpydoc_validation_exclude = {r"\.__init__$", r"\.__call__$", r"\.KERNEL_NAMES$"}  # a tuple (data)

html_theme = "pydata_sphinx_theme"
html_title = f"softmax-dispatch {release}"
html_static_path = ["_static"]
html_favicon = "_static/logo.svg"
html_logo = "_static/logo.svg"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "header_links_before_dropdown": 5,
    # the search as an icon beside the theme switch: the bar fits one line at 1280 px
    "navbar_persistent": [],
    "navbar_end": ["search-button", "theme-switcher"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    # nothing fetched from elsewhere: no icon links, no analytics, no version switcher
    "icon_links": [],
}
# one level of pages: the top bar is the navigation, no left sidebar
html_sidebars: dict[str, list[str]] = {"**": []}
html_context = {"default_mode": "light"}
html_show_sourcelink = False
