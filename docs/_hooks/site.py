"""MkDocs hooks: the site shows the repository's committed results, and tolerates links into the code.

* Figures are written by the benchmarks into ``benchmarks/results/``; the docs
  show those files, never copies. ``PUBLISHED`` maps a folder of the site to a
  folder of the repository whose files are added to the build as they are.
* A page may link to a file of the repository outside ``docs/`` (a module, a
  benchmark): the link works where the Markdown is read in the repository, and
  on the site, which does not carry the source, it becomes its text. A link to
  a file that exists nowhere is left alone, so the strict build still fails on it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = {"study/figures": "benchmarks/results/study_report/figures"}
# [text](target) but not ![alt](image); the target without a title or anchor.
LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s#]+)(#[^)\s]*)?\)")


def on_files(files, config):
    for site_folder, repo_folder in PUBLISHED.items():
        source = ROOT / repo_folder
        for path in sorted(source.rglob("*")):
            if path.is_file():
                uri = f"{site_folder}/{path.relative_to(source).as_posix()}"
                files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    page_folder = Path(page.file.abs_src_path).parent
    docs = Path(config["docs_dir"]).resolve()

    def unlink(match):
        text, target, _ = match.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            return match.group(0)  # a URL or an absolute path: not ours to judge
        resolved = Path(os.path.normpath(page_folder / target))
        inside_docs = resolved == docs or docs in resolved.parents
        if not inside_docs and resolved.exists() and ROOT in resolved.parents:
            return text
        return match.group(0)

    return LINK.sub(unlink, markdown)


def on_page_content(html, page, config, files):
    # docstrings.SphinxConventions makes griffe read a "{...} or None" type whole by a second
    # space after the colon; the type then starts with that space.
    return re.sub(r"<code> (?=\{)", "<code>", html)
