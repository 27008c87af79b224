"""Sphinx configuration of the losstools site: build with ``sphinx-build -W --keep-going -n docs docs/_build/html``."""
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

from sphinx.pycode import ModuleAnalyzer

import losstools

project = "losstools"
author = "the losstools authors"
copyright = "2026, the losstools authors"
release = version = losstools.__version__

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.napoleon",
              "sphinx.ext.viewcode", "sphinx.ext.doctest", "sphinx_copybutton"]
templates_path = ["_templates"]
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "reproduction/tables.md"]

# The notebooks' outputs are stored and checked by nbval: the site renders them, it never executes them.
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath"]   # else $...$ stays raw text, without a warning
myst_heading_anchors = 3
nb_render_markdown_format = "gfm"                    # tables.Table outputs are pipe tables

autosummary_ignore_module_all = True                 # a module page lists what the module defines
autodoc_typehints = "description"
napoleon_numpy_docstring = True
napoleon_google_docstring = True

# Cross-references to losstools' own names must resolve (-n); external types are not linked (no intersphinx, offline).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", (r"(torch|numpy|np|W|matplotlib|scipy|ipywidgets|pathlib|subprocess|collections|concurrent|typing|"
                r"argparse|os|io|dask|distributed|tqdm|enum|abc|contextlib|json)(\..*)?")),
    (r"py:.*", (r"(Tensor|Module|Figure|Axes|ndarray|Path|Generator|Callable|Iterable|Iterator|Sequence|Mapping|"
                r"Any|Literal|Optional|Union|TypeAlias|NamedTuple|LinearOperator|DataLoader|Dataset|nn\..*|optional)")),
    (r"py:class", r"(int|float|str|bool|dict|list|tuple|object|None|type|callable|array-like|function|iterable)"),
]

html_theme = "pydata_sphinx_theme"
html_title = "losstools"
html_copy_source = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
}
html_context = {"default_mode": "light"}


# ---- The API reference is generated from the packages' ``__all__``. The recursive autosummary in api.md documents each
# object once, on the page of the public module that defines it; what a package re-exports from a private module
# (e.g. ``pruning.study`` from ``pruning._study``) is listed here, so that every public name gets a page.

def public_modules(package=losstools):
    """The package and every module below it without a ``_``-prefixed part, in import order."""
    yield package
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            yield importlib.import_module(info.name)


def defined_in(module, name: str, obj) -> bool:
    """Whether ``module`` itself defines ``name`` (a function or class by ``__module__``, data by an assignment)."""
    if inspect.ismodule(obj):
        return False
    if inspect.isclass(obj) or inspect.isroutine(obj):
        return getattr(obj, "__module__", None) == module.__name__
    return re.search(rf"^{re.escape(name)}\s*(:[^=\n]*)?=", inspect.getsource(module), re.MULTILINE) is not None


def reexported_privately() -> dict[str, list[str]]:
    """{package: names of its ``__all__`` that no public module defines}."""
    modules = list(public_modules())
    found = {}
    for module in modules:
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not inspect.ismodule(obj) and not any(defined_in(m, name, getattr(m, name)) for m in modules
                                                     if getattr(m, name, None) is obj):
                found.setdefault(module.__name__, []).append(name)
    return found


def write_reexports(path: Path) -> None:
    lines = []
    for package, names in reexported_privately().items():
        lines += [f".. currentmodule:: {package}", "", ".. autosummary::", "   :toctree: generated", ""]
        lines += [f"   {name}" for name in sorted(names)] + [""]
    text = "\n".join(lines)
    if not path.exists() or path.read_text() != text:   # unchanged: no rebuild of the API page
        path.write_text(text)


write_reexports(Path(__file__).parent / "api_reexports.rst")   # generated: in .gitignore, included by api.md
autosummary_generate = ["api.md", "api_reexports.rst"]
exclude_patterns.append("api_reexports.rst")


# ---- Cross-references: a public alias (``losstools.hessian``, ``pruning.prune``, ``Objective``) resolves to the page
# of the object it names; private objects (``_``-prefixed) have no page and are not linked.
nitpick_ignore_regex.append((r"py:.*", r"(losstools\.)?([\w.]*\.)?_\w+(\..*)?"))


def lookup(dotted: str):
    """The object a dotted name points to (importing modules as needed), or None."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def documented_name(obj, name: str) -> str | None:
    """Where ``obj`` (found as ``name``) is documented: its defining public module, or the package re-exporting it."""
    if inspect.ismodule(obj):
        return obj.__name__
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if module and qualname and module.startswith("losstools") and not any(p.startswith("_") for p in module.split(".")):
        return f"{module}.{qualname}"
    short = name.rsplit(".", 1)[-1]
    for package, names in REEXPORTED.items():
        if short in names and getattr(importlib.import_module(package), short) is obj:
            return f"{package}.{short}"
    for m in public_modules():
        if getattr(m, short, None) is obj and defined_in(m, short, obj):
            return f"{m.__name__}.{short}"
    return None


def resolve_alias(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target, module, cls = node["reftarget"], node.get("py:module"), node.get("py:class")
    candidates = [target, f"losstools.{target}"]
    if module:
        candidates += [f"{module}.{cls}.{target}" if cls else None, f"{module}.{target}"]
    for name in filter(None, candidates):
        obj = lookup(name) if name.startswith("losstools") else None
        canonical = None if obj is None else documented_name(obj, name)
        if canonical and canonical != target:
            found = env.get_domain("py").resolve_any_xref(env, node["refdoc"], app.builder, canonical, node, contnode)
            if found:
                return found[0][1]
    return None


def importable(name: str):
    """The module, or None where an optional dependency is missing (``_nbgrader`` needs the classroom extra)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def data_doc_comment(app, what, name, obj, options, lines):
    """A constant re-exported from a private module gets the ``#:`` comment of its definition, not its type's
    docstring."""
    type_doc = type(obj).__doc__
    inherited = isinstance(type_doc, str) and "\n".join(lines).strip() == inspect.cleandoc(type_doc)
    if what == "data" and lines and inherited:
        short = name.rsplit(".", 1)[-1]
        for info in pkgutil.walk_packages(losstools.__path__, "losstools."):
            module = importable(info.name)
            if module is None:
                continue
            docs = ModuleAnalyzer.for_module(info.name).find_attr_docs()
            if ("", short) in docs and getattr(module, short, None) is obj:
                lines[:] = list(docs[("", short)])
                return
        lines[:] = []


REEXPORTED = reexported_privately()


EXERCISE_LINK = re.compile(r"\[([^\]\[\n\"]+)\]\(exercises/(\w+)\.ipynb\)")   # inside one JSON string


def exercise_links(app, docname, source):
    """The lectures link their exercises as ``[text](exercises/NAME.ipynb)``, right in JupyterLab; MyST resolves a path
    link through the symlink to ``notebooks/``, outside the site, so the site's copy is linked by its document name."""
    if docname.startswith("course/0"):
        source[0] = EXERCISE_LINK.sub(r"{doc}`\1 </course/exercises/\2>`", source[0])


def setup(app):
    app.connect("source-read", exercise_links)
    app.connect("missing-reference", resolve_alias)
    app.connect("autodoc-process-docstring", data_doc_comment)
