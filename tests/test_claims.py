"""Every figure the README and the documentation pages quote is one a committed benchmark recorded.

A figure in prose goes stale silently when the code changes; this test ties
what ``README.md`` and ``docs/**/*.md`` quote to ``benchmarks/results/``, at
the precision the prose quotes it:

- each speed ratio ``N.NNx`` to a field named ``ratio...`` or ``speedup...``
  (or its inverse);
- each accuracy ``NN.NN ± N.NN`` to a mean and a standard deviation recorded in
  one results file;
- each percentage with two decimals (``98.19 %``, ``96.10 / 98.17 / 95.48 %``)
  and each two-decimal figure in a table whose header speaks of ``%`` to a
  number some results file records, as a percentage or as a fraction.

Tables the pages include from a results file (``--8<--``) are that file, and
need no check.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# "0.30x the time", "7x faster": a number right before an x that ends a word
# (not 28x28, not 0x8040).
RATIO = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)x(?!\w)")
MEAN_SD = re.compile(r"(?<![\w.])(\d+\.\d+) ± (\d+\.\d+)")
# "98.19 %", "96.10 / 98.17 / 95.48 %": two-decimal figures before a percent sign.
PERCENTAGES = re.compile(r"(?<![\w.])\d+\.\d\d(?:\s*/\s*\d+\.\d\d)*\s?%")
TWO_DECIMALS = re.compile(r"(?<![\w.=])\d+\.\d\d(?![\w.])")


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


def _numbers(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _numbers(v)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield float(value)


@functools.cache
def recorded_numbers():
    """{results file: every number it records, as written and x100 (a fraction as a percentage)}."""
    recorded = {}
    for path in sorted(RESULTS.rglob("*.json")):
        numbers = list(_numbers(json.loads(path.read_text())))
        recorded[path.relative_to(RESULTS).as_posix()] = numbers + [n * 100 for n in numbers]
    return recorded


def _decimals(figure):
    return len(figure.split(".")[1]) if "." in figure else 0


def _is_recorded(figure, numbers):
    return any(round(n, _decimals(figure)) == float(figure) for n in numbers)


def _label(doc):
    return doc.relative_to(ROOT).as_posix() if doc.is_relative_to(ROOT) else doc.name


def quoted_percentages(docs=DOCS):
    """(where, figure) for each two-decimal percentage in prose and in tables about percentages."""
    for doc in docs:
        header = None
        for number, line in enumerate(doc.read_text().splitlines(), start=1):
            where = f"{_label(doc)}:{number}"
            in_table = line.lstrip().startswith("|")
            header = (header or line) if in_table else None
            if in_table and line is not header and "%" in header and not re.fullmatch(r"[\s|:-]+", line):
                for figure in TWO_DECIMALS.findall(line):
                    yield where, figure
                continue
            for chain in PERCENTAGES.findall(line):
                for figure in TWO_DECIMALS.findall(chain):
                    yield where, figure


def quoted_ratios():
    for doc in DOCS:
        for number, line in enumerate(doc.read_text().splitlines(), start=1):
            for match in RATIO.finditer(line):
                yield f"{doc.name}:{number}", match.group(1)


QUOTED = list(quoted_ratios())
QUOTED_MEAN_SD = [(f"{_label(doc)}:{number}", *match.groups())
                  for doc in DOCS for number, line in enumerate(doc.read_text().splitlines(), start=1)
                  for match in MEAN_SD.finditer(line)]
QUOTED_PERCENTAGES = list(quoted_percentages())


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


def test_the_docs_quote_accuracies_at_all():
    assert len(QUOTED_MEAN_SD) >= 5 and len(QUOTED_PERCENTAGES) >= 20, (QUOTED_MEAN_SD, QUOTED_PERCENTAGES)


@pytest.mark.parametrize("where, mean, sd", QUOTED_MEAN_SD, ids=[f"{w}-{m}" for w, m, _ in QUOTED_MEAN_SD])
def test_every_quoted_mean_and_sd_was_recorded_together(where, mean, sd):
    files = [name for name, numbers in recorded_numbers().items()
             if _is_recorded(mean, numbers) and _is_recorded(sd, numbers)]
    assert files, (f"{where} quotes {mean} ± {sd}, which no file in benchmarks/results/ records "
                   "(rerun the benchmark and quote what it wrote)")


@pytest.mark.parametrize("where, figure", QUOTED_PERCENTAGES,
                         ids=[f"{w}-{f}" for w, f in QUOTED_PERCENTAGES])
def test_every_quoted_percentage_was_recorded(where, figure):
    numbers = [n for file_numbers in recorded_numbers().values() for n in file_numbers]
    assert _is_recorded(figure, numbers), (
        f"{where} quotes {figure} %, which no file in benchmarks/results/ records "
        "(rerun the benchmark and quote what it wrote)")


def test_a_figure_in_a_table_about_percentages_is_checked(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("| setting | accuracy % |\n| --- | ---: |\n| alpha=0.1 | 69.00 ± 6.63 |\n\n"
                    "Prose: 96.10 / 98.17 / 95.48 % and 12.5 % and 1.05x.\n")
    assert [f for _, f in quoted_percentages([page])] == ["69.00", "6.63", "96.10", "98.17", "95.48"]
