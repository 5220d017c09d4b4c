"""Sphinx configuration of the API reference (``make docs``; the HTML goes to ``build/docs/html``).

The source folder is ``docs/``: the reference pages live in ``docs/api/`` and the guides (``docs/*.md``, written for
GitHub) are read as they are by myst-parser. No page is generated into the source tree (no autosummary stubs), so a
build never writes outside its output folder.
"""

import sys

import multimodal_ip

project = "multimodal_ip"
author = "multimodal_ip developers"
copyright = "multimodal_ip developers, BSD-3-Clause"
version = release = multimodal_ip.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
]

root_doc = "index"
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
templates_path: list = []

# autodoc / autosummary: tables link to the entries on the same page (no generated stub pages)
autosummary_generate = False
autodoc_default_options = {
    "members": True,
    "undoc-members": False,
    "show-inheritance": True,
    # the private methods a subclass implements (NonlinearOperator, Solver): part of the contract, so documented
    "private-members": "_forward,_jacobian,_linearize,_state_variable_names,_no_progress",
}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # types are in the numpydoc sections, as in PyLops
autodoc_inherit_docstrings = True
autoclass_content = "class"

# every cross reference inside the package must resolve; names of other libraries are not linked (no intersphinx:
# the build reads nothing from the network), so references to them are let through
nitpicky = True
_OTHERS = sorted(set(sys.stdlib_module_names) | {"numpy", "np", "scipy", "pylops", "pyproximal", "cupy", "jax", "h5py",
                                                 "hdf5plugin", "pluggy", "hypothesis", "mpi4py", "pylops_mpi",
                                                 "matplotlib", "numba", "xraylib", "tqdm", "threadpoolctl"})
nitpick_ignore_regex = [
    (r"py:.*", rf"({'|'.join(_OTHERS)})(\..*)?"),
    (r"py:.*", r"callable|array_like|ndarray|optional"),
    # the command line's own modules are not API (``mmip --help`` documents them); its Command class is
    (r"py:.*", r"multimodal_ip\.cli\.(?!Command$).+"),
]

# numpydoc: members are documented by autodoc, not listed again by numpydoc
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = False

# myst: the guides link to each other's headings (``plugins.md#streamed-operators-...``), as on GitHub
myst_heading_anchors = 4
myst_enable_extensions = ["dollarmath"]

html_theme = "alabaster"
html_title = f"multimodal_ip {release}"
html_static_path: list = []
html_show_sourcelink = False



def _module_directive():
    """``.. apimodule:: module``: the module's docstring, the directive's own text, an autosummary table of the
    names in the module's ``__all__`` (in that order) and one autodoc entry per name. A page thus lists what the
    package exports, with no hand-kept copy of the list to fall behind ``__all__``."""
    import importlib
    import inspect

    from docutils import nodes
    from docutils.parsers.rst import directives
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    def names(arg):
        return [a.strip() for a in arg.split(",") if a.strip()]

    def entry(module, name, obj):
        if inspect.isclass(obj):
            kind = "autoexception" if issubclass(obj, BaseException) else "autoclass"
            return [f".. {kind}:: {module}.{name}", ""]
        if inspect.isfunction(obj) or inspect.isbuiltin(obj):
            return [f".. autofunction:: {module}.{name}", ""]
        value = [] if isinstance(obj, (int, float, str, tuple)) and len(repr(obj)) < 80 else ["   :no-value:"]
        return [f".. autodata:: {module}.{name}", *value, ""]

    class ApiModule(SphinxDirective):
        required_arguments = 1
        has_content = True
        option_spec = {"exclude": names, "extra": names, "prefix": directives.unchanged_required}

        def run(self):
            module = self.arguments[0]
            mod = importlib.import_module(module)
            exported = [n for n in mod.__all__ if n not in self.options.get("exclude", ())]
            if "prefix" in self.options:  # functions defined here that __all__ does not list (hook specifications)
                exported += [n for n, o in vars(mod).items() if n.startswith(self.options["prefix"])
                             and inspect.isfunction(o) and o.__module__ == module and n not in exported]
            extra = self.options.get("extra", [])  # "submodule.Name": public but not re-exported
            lines = [f".. automodule:: {module}", "   :no-members:", ""]
            lines += [*self.content, ""]
            lines += [".. autosummary::", "   :nosignatures:", ""]
            lines += [f"   {n}" for n in exported + extra] + [""]  # relative to the module automodule set
            for n in exported:
                lines += entry(module, n, getattr(mod, n))
            for n in extra:
                sub, _, leaf = n.rpartition(".")
                lines += entry(f"{module}.{sub}", leaf, getattr(importlib.import_module(f"{module}.{sub}"), leaf))
            node = nodes.container()
            self.state.nested_parse(StringList(lines, source=self.get_source_info()[0]), self.content_offset, node)
            return node.children

    return ApiModule


def _numpydoc_warnings_as_sphinx_warnings():
    """numpydoc reports a malformed section (``Unknown section Retrns``, a wrong underline) with a Python
    ``UserWarning``, which ``-W`` does not see: route those to Sphinx's log, so that they fail the build too."""
    import warnings

    from sphinx.util import logging

    logger = logging.getLogger("numpydoc")
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if "numpydoc" in str(filename):
            logger.warning("%s", " ".join(str(message).split()), type="numpydoc", subtype="docstring")
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def _data_docstring(app, what, name, obj, options, lines):
    """A constant's docstring is its ``#:`` comment where it is defined: a re-exported one (``mmip_tomography.
    ATTENUATION_MODES``) would otherwise show the docstring of ``tuple`` or ``dict``."""
    import inspect

    from sphinx.pycode import ModuleAnalyzer, PycodeError

    if what != "data":
        return
    own = inspect.getdoc(type(obj)) or ""
    if " ".join(" ".join(lines).split()) == " ".join(own.split()):
        lines.clear()
    if lines:
        return
    modname, _, attr = name.rpartition(".")
    top = modname.split(".")[0]
    for mod in sorted(m for m in sys.modules if m == top or m.startswith(top + ".")):
        if getattr(sys.modules[mod], attr, None) is not obj:
            continue
        try:
            docs = ModuleAnalyzer.for_module(mod).find_attr_docs()
        except PycodeError:
            continue
        if ("", attr) in docs:
            lines.extend(docs[("", attr)])
            return


def setup(app):
    app.add_directive("apimodule", _module_directive())
    app.connect("autodoc-process-docstring", _data_docstring, priority=400)  # before numpydoc (500)
    _numpydoc_warnings_as_sphinx_warnings()
    return {"parallel_read_safe": True}
