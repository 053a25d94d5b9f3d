"""Sphinx configuration of the cellrep documentation.

Build (offline, warnings are errors): ``sphinx-build -W -b html docs docs/_build/html``.
Set ``CELLREP_DOCS_INTERSPHINX=1`` to link to the anndata, scanpy, scvi-tools, numpy, ... docs; it
downloads their inventories, so it is off by default to keep the build offline.
"""

import os
import shutil
import warnings
from datetime import date
from importlib.metadata import version as package_version
from pathlib import Path

from sphinx.deprecation import RemovedInSphinx10Warning

# sphinx-autodoc-typehints 3.6 calls an API that Sphinx 9 deprecates; harmless, but noisy on stderr
warnings.filterwarnings("ignore", category=RemovedInSphinx10Warning, module=r"sphinx_autodoc_typehints\..*")

HERE = Path(__file__).parent
REPO = HERE.parent

project = "cellrep"
author = "cellrep developers"
copyright = f"{date.today().year}, {author}"
release = package_version("cellrep")
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "sphinx_autodoc_typehints",
    "sphinx_copybutton",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "jupyter_execute"]
# .rst first: autosummary writes its generated pages with the first suffix
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# --- API pages -----------------------------------------------------------------------------------
autosummary_generate = True
autosummary_ignore_module_all = False  # a subpackage documents exactly what its __all__ exports
autosummary_imported_members = True
autodoc_member_order = "groupwise"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_mock_imports: list[str] = []
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_use_param = True
typehints_defaults = "braces"
always_use_bars_union = True

# --- notebooks: rendered as committed, never executed here ----------------------------------------
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3


def _copy_tutorials() -> None:
    """Copy the tutorial notebooks into the (git-ignored) ``generated/tutorials`` so Sphinx can render them.

    Sphinx only reads sources inside ``docs/``; copying works on every OS, unlike a symlink. The
    executed copies that ``tests/test_tutorials.py`` leaves in ``build/executed_tutorials`` are
    preferred, so the pages show outputs; otherwise the committed, output-free notebooks are used.
    """
    target = HERE / "generated" / "tutorials"
    target.mkdir(parents=True, exist_ok=True)
    for notebook in sorted((REPO / "tutorials").glob("*.ipynb")):
        executed = REPO / "build" / "executed_tutorials" / notebook.name
        source = (
            executed
            if executed.exists() and executed.stat().st_mtime >= notebook.stat().st_mtime
            else notebook
        )
        copy = target / notebook.name
        if not copy.exists() or copy.read_bytes() != source.read_bytes():
            shutil.copyfile(source, copy)


_copy_tutorials()

# --- cross-links to other projects (network; opt-in) ----------------------------------------------
intersphinx_mapping = {}
if os.environ.get("CELLREP_DOCS_INTERSPHINX") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable/", None),
        "scipy": ("https://docs.scipy.org/doc/scipy/", None),
        "pandas": ("https://pandas.pydata.org/docs/", None),
        "anndata": ("https://anndata.readthedocs.io/en/stable/", None),
        "scanpy": ("https://scanpy.readthedocs.io/en/stable/", None),
        "scvi-tools": ("https://docs.scvi-tools.org/en/stable/", None),
        "matplotlib": ("https://matplotlib.org/stable/", None),
        "sklearn": ("https://scikit-learn.org/stable/", None),
        "torch": ("https://docs.pytorch.org/docs/stable/", None),
    }

# --- HTML: the scverse look ------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "cellrep"
html_static_path = ["_static"]
html_theme_options = {
    "repository_url": "https://github.com/cellrep/cellrep",
    "use_repository_button": True,
    "path_to_docs": "docs/",
    "navigation_with_keys": False,
}
html_show_sphinx = False


# --- docstrings: prose "Returns" sections ---------------------------------------------------------
def _is_underline(line: str) -> bool:
    return bool(line.strip()) and set(line.strip()) == {"-"}


def _prose_returns_as_field(app, what, name, obj, options, lines: list[str]) -> None:
    """Turn a prose ``Returns`` section into one untyped napoleon entry (a ``:`` line, then the text indented).

    Our return types live in the signatures, so ``Returns`` holds sentences. napoleon would read
    every unindented line of it as a separate ``type`` entry and break the text into bullets.
    Named numpy-style entries (indented descriptions) are left as they are.
    """
    starts = [
        i for i in range(len(lines) - 1) if lines[i].strip() == "Returns" and _is_underline(lines[i + 1])
    ]
    if not starts:
        return
    start = starts[0]
    end = start + 2
    while end < len(lines) and not (end + 1 < len(lines) and _is_underline(lines[end + 1])):
        end += 1
    body = lines[start + 2 : end]
    while body and not body[-1].strip():
        body.pop()
    if not body or any(line.startswith((" ", "\t")) for line in body if line.strip()):
        return
    lines[start + 2 : start + 2 + len(body)] = [
        ":",
        *(f"    {line}" if line.strip() else "" for line in body),
    ]


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _prose_returns_as_field, priority=100)
