"""Every speed ratio the README and docs/ quote is one a committed benchmark measured.

A figure in prose goes stale silently when the code changes; this test ties
each ``N.NNx`` in ``README.md`` and ``docs/*.md`` to a ratio recorded in
``benchmarks/results/`` (a field named ``ratio...`` or ``speedup...``, or its
inverse), at the precision the prose quotes it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# "0.30x the time", "7x faster": a number right before an x that ends a word
# (not 28x28, not 0x8040).
RATIO = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)x(?!\w)")


def measured_ratios():
    found = []

    def walk(value, key=""):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) \
                and key.startswith(("ratio", "speedup")) and value > 0:
            found.extend([float(value), 1.0 / float(value)])

    for path in sorted(RESULTS.glob("*.json")):
        walk(json.loads(path.read_text()))
    return found


def quoted_ratios():
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), start=1):
            for match in RATIO.finditer(line):
                yield f"{doc.name}:{number}", match.group(1)


QUOTED = list(quoted_ratios())


def test_the_docs_quote_ratios_at_all():
    assert len(QUOTED) >= 3, QUOTED  # the check below is not vacuous


@pytest.mark.parametrize("where, figure", QUOTED, ids=[f"{w}-{f}x" for w, f in QUOTED])
def test_every_quoted_ratio_was_measured(where, figure):
    decimals = len(figure.split(".")[1]) if "." in figure else 0
    ratios = measured_ratios()
    assert any(round(r, decimals) == float(figure) for r in ratios), (
        f"{where} quotes {figure}x, which no file in benchmarks/results/ records "
        "(rerun the benchmark and quote what it wrote)")


def test_no_placeholder_left_in_the_docs():
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), start=1):
            assert not re.fullmatch(r"\s*[A-Z_]{6,}\s*", line), f"{doc.name}:{number}: placeholder {line.strip()!r}"
