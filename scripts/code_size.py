"""Sizes of the package's code: its lines, ``MLPClassifier``'s lines of code, its longest functions.

A line of code is a line that carries a token other than a comment, a line
break or indentation, and is not part of a docstring (a module's, a class's or
a function's first statement when it is a string). A function's count takes in
its nested functions; a class's, its methods.

Usage::

    python scripts/code_size.py [PACKAGE_DIR] [--top N]

prints the package's total lines (every line of every ``.py`` file, as
``wc -l`` counts them), ``MLPClassifier``'s lines of code and the ``N``
longest functions. ``tests/test_architecture.py`` asserts the limits with
:func:`definitions`.
"""

from __future__ import annotations

import argparse
import ast
import io
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mnist_mlp"

_NOT_CODE = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                       tokenize.ENDMARKER})
_SCOPES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def code_lines(source):
    """The numbers of the lines of ``source`` that are code (see the module docstring).

    Parameters
    ----------
    source : str
        A module's text.

    Returns
    -------
    set of int
    """
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in _NOT_CODE:
            lines.update(range(token.start[0], token.end[0] + 1))
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if isinstance(node, _SCOPES) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            lines.difference_update(range(body[0].lineno, body[0].end_lineno + 1))
    return lines


def definitions(package=PACKAGE):
    """Every class and function of ``package`` with its lines of code.

    Returns
    -------
    list of (int, str, str)
        ``(lines of code, "class" or "function", "path:line qualified.name")``,
        longest first.
    """
    found = []
    for path in sorted(Path(package).rglob("*.py")):
        source = path.read_text()
        code = code_lines(source)
        found += _walk(ast.parse(source), code, f"{path.relative_to(Path(package).parent)}", "")
    return sorted(found, key=lambda row: (-row[0], row[2]))


def _walk(node, code, path, prefix):
    rows = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            kind = "class" if isinstance(child, ast.ClassDef) else "function"
            size = len({n for n in code if child.lineno <= n <= child.end_lineno})
            rows.append((size, kind, f"{path}:{child.lineno} {prefix}{child.name}"))
            rows += _walk(child, code, path, f"{prefix}{child.name}.")
        else:
            rows += _walk(child, code, path, prefix)
    return rows


def total_lines(package=PACKAGE):
    """Lines of every ``.py`` file of ``package``, blank, comment and docstring lines included."""
    return sum(len(path.read_text().splitlines()) for path in Path(package).rglob("*.py"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default=str(PACKAGE))
    parser.add_argument("--top", type=int, default=10, help="longest functions shown (default 10)")
    args = parser.parse_args(argv)
    rows = definitions(args.package)
    classifier = next(size for size, kind, where in rows if kind == "class" and where.endswith(" MLPClassifier"))
    print(f"{Path(args.package).name}/ lines: {total_lines(args.package)}")
    print(f"MLPClassifier lines of code: {classifier}")
    print("longest functions (lines of code):")
    for size, _, where in [row for row in rows if row[1] == "function"][:args.top]:
        print(f"  {size:4d}  {where}")


if __name__ == "__main__":
    main()
