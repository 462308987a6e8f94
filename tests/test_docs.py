"""Every Python block of the README and docs/ runs as written.

Each page's ```python blocks run in order, in one namespace of their own, with a
temporary folder as the working folder and an MLflow store there (tracking on),
on the package's default data (the embedded subset). All pages run in one child
process, one after the other: importing TensorFlow and compiling the training
loop cost about a minute on a busy 2-core machine, which a process per page
would pay again for each. A statement followed by a comment naming an
exception, as the docs show an error::

    pipe.predict(x_test / 255.0)
    # InvalidInputError: input looks scaled to [0, 1]; ...

must raise that exception with that message. A block that cannot run here (it
needs a server or a cluster) says why in a marker on the line above its fence,
``<!-- docs-test: skip, <reason> -->``; it is still compiled. Keep such blocks rare.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import run_child

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\b,?\s*(.*?)\s*-->")
# "# ValueError: The feature names ..." after a statement: the error the docs say it raises.
EXPECTED_ERROR = re.compile(r"^#\s*([A-Za-z_]\w*(?:Error|Exception)):\s*(.*)$")


def python_blocks(page):
    """``(first line number, code, skip reason or None)`` of each ```python block of ``page``."""
    lines = Path(page).read_text().splitlines()
    blocks, start = [], None
    for number, line in enumerate(lines, 1):
        if start is None and line.strip() == "```python":
            start = number
        elif start is not None and line.strip() == "```":
            marker = SKIP.search(lines[start - 2]) if start > 1 else None
            code = textwrap.dedent("\n".join(lines[start:number - 1]))  # a block in a list item is indented
            blocks.append((start + 1, code, None if marker is None else marker.group(1)))
            start = None
    return blocks


def _expected_error(code_lines, end):
    """The exception name and message the comment lines after line ``end`` (1-based) announce."""
    following = code_lines[end:]
    match = EXPECTED_ERROR.match(following[0].strip()) if following else None
    if match is None:
        return None
    message = [match.group(2)]
    for line in following[1:]:
        if not line.strip().startswith("#"):
            break
        message.append(line.strip().lstrip("#"))
    return match.group(1), " ".join(" ".join(message).split())


def run_page(page):
    """Run ``page``'s blocks in this process, statement by statement; raise at the first failure."""
    namespace = {"__name__": "__main__"}
    relative = str(Path(page).relative_to(ROOT))
    for first_line, code, skip in python_blocks(page):
        tree = ast.parse(code, filename=relative)
        ast.increment_lineno(tree, first_line - 1)  # tracebacks point into the page
        if skip is not None:
            compile(tree, relative, "exec")
            print(f"{relative}:{first_line}: compiled only ({skip})", flush=True)
            continue
        code_lines = code.splitlines()
        for statement in tree.body:
            compiled = compile(ast.Module(body=[statement], type_ignores=[]), relative, "exec")
            expected = _expected_error(code_lines, statement.end_lineno - first_line + 1)
            if expected is None:
                exec(compiled, namespace)
                continue
            name, message = expected
            try:
                exec(compiled, namespace)
            except Exception as exc:  # noqa: BLE001 - checked against the page's own words
                raised = " ".join(str(exc).split())
                if name not in {cls.__name__ for cls in type(exc).__mro__} or message not in raised:
                    raise AssertionError(f"{relative}:{statement.lineno}: expected {name}: {message}\n"
                                         f"got {type(exc).__name__}: {raised}") from exc
            else:
                raise AssertionError(f"{relative}:{statement.lineno}: expected {name}, nothing was raised")
        print(f"{relative}:{first_line}: ran", flush=True)


def run_pages(pages, workdir):
    """Run each page in a folder of its own under ``workdir``; ``{page: traceback or None}``."""
    import traceback

    import mlflow

    results = {}
    for page in pages:
        folder = Path(workdir) / Path(page).relative_to(ROOT).as_posix().replace("/", "_")
        folder.mkdir(parents=True)
        os.chdir(folder)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlflow.db"
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        start = time.perf_counter()
        try:
            run_page(page)
            results[str(page)] = None
        except BaseException:  # noqa: BLE001 - reported against its page
            results[str(page)] = traceback.format_exc()
        finally:
            while mlflow.active_run():  # a page's failure must not leave its run to the next page
                mlflow.end_run("FAILED")
            print(f"{Path(page).relative_to(ROOT)}: {time.perf_counter() - start:.1f} s", flush=True)
    return results


def _pages_with_python():
    return [page for page in PAGES if python_blocks(page)]


@pytest.fixture(scope="module")
def page_results(tmp_path_factory):
    """Every page's outcome, from one child process that runs them all."""
    workdir = tmp_path_factory.mktemp("docs")
    env = {key: value for key, value in os.environ.items()
           if key not in ("MNIST_MLP_TRACKING", "MNIST_MLP_DATA_DIR", "MLFLOW_EXPERIMENT_NAME")}
    env.update(MPLBACKEND="Agg", PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    done = run_child([sys.executable, "-m", "tests.test_docs", str(workdir), *map(str, _pages_with_python())],
                     cwd=workdir, env=env, timeout=900)
    results = workdir / "results.json"
    assert results.is_file(), f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return json.loads(results.read_text())


def test_skipped_blocks_are_rare_and_say_why():
    skipped = [(page.name, line, reason) for page in PAGES for line, _, reason in python_blocks(page)
               if reason is not None]
    assert all(reason for _, _, reason in skipped), skipped
    assert len(skipped) <= 2, skipped


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with_python(), ids=lambda page: str(page.relative_to(ROOT)))
def test_python_blocks_run_as_written(page, page_results):
    failure = page_results[str(page)]
    assert failure is None, failure


if __name__ == "__main__":
    outcome = run_pages([Path(page) for page in sys.argv[2:]], sys.argv[1])
    (Path(sys.argv[1]) / "results.json").write_text(json.dumps(outcome))
