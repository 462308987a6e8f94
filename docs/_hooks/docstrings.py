"""griffe extensions for the API pages: the docstrings read as numpydoc and Sphinx read them.

The package's docstrings follow numpydoc as scikit-learn writes it, for Sphinx.
mkdocstrings reads them with griffe and renders Markdown, which differs in two
places that ``SphinxConventions`` smooths over:

* Sphinx roles (``:class:`MLPClassifier```, ``:func:`~mnist_mlp.data.load_mnist```)
  would show as the literal text ``:class:`` before the name; each becomes the
  name as inline code (the last dotted part for a ``~`` target, as Sphinx
  shows it). Names stay unlinked: many point at private helpers that the API
  reference leaves out, and an unresolved link would fail the strict build.
* ``penalty : {"l1", "l2"} or None, default=None``: griffe reads a type that
  starts with a brace as a bare set of choices whose first is the default, and
  would show ``default: "l1"``; with the rest of the line after the braces,
  the type is read as written and the stated default kept.
"""

from __future__ import annotations

import ast
import re
import textwrap

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|obj|exc|const):`(~?)([^`]+)`")
# "name : {...} more", "a, b : {...}, default=x": choices followed by more of the type.
CHOICES_AND_MORE = re.compile(r"^(\s*\**\w+(?:, \**\w+)* :) (\{[^}]*\}\s*\S.*)$", re.M)


def _as_code(match):
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxConventions(griffe.Extension):
    """Rewrite every docstring as it is loaded: roles as code, choices with their stated default."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            text = ROLE.sub(_as_code, obj.docstring.value)
            # Two spaces after the colon: griffe then reads the whole type, braces and all.
            obj.docstring.value = CHOICES_AND_MORE.sub(r"\1  \2", text)


class SearchDocstrings(griffe.Extension):
    """The tracked searches' docstrings as Python shows them, read without importing the package.

    ``mnist_mlp.model_selection.search`` completes the searches' docstrings at
    import time: the ``<tracking parameters>`` line becomes
    ``TRACKING_PARAMS_DOC``, and ``HyperbandSearchCV`` takes ``_Hyperband``'s
    docstring. This does the same on the statically read source, so the API
    reference shows what ``help(GridSearchCV)`` shows.
    """

    PLACEHOLDER = "<tracking parameters>\n"

    def on_package(self, *, pkg, **kwargs):
        if pkg.name != "mnist_mlp":
            return
        search = pkg["model_selection.search"]
        hyperband = pkg["model_selection.hyperband"]
        tracking_doc = textwrap.dedent(ast.literal_eval(str(search["TRACKING_PARAMS_DOC"].value)))
        target = hyperband["HyperbandSearchCV"]
        if target.docstring is None:
            source = hyperband["_Hyperband"].docstring
            target.docstring = griffe.Docstring(source.value, lineno=source.lineno,
                                                endlineno=source.endlineno, parent=target)
        for cls in (search["GridSearchCV"], search["HalvingGridSearchCV"], target):
            cls.docstring.value = cls.docstring.value.replace(self.PLACEHOLDER, tracking_doc)
