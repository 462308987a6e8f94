"""The study report, read back from MLflow."""

from __future__ import annotations

import json

import pytest

from mnist_mlp.study import collect, write_report
from mnist_mlp.study import run_experiment


@pytest.mark.slow
def test_report_sets_our_figures_beside_the_published_ones(tracked, embedded, tmp_path):
    run_experiment("2.4.1", embedded, epochs=1, n_train=300, seeds=[0, 1])
    run_experiment("2.3", embedded, epochs=1, n_train=300)
    sections = {s["name"]: s for s in collect()}
    assert not sections["2.2"]["ran"] and sections["2.4.1"]["ran"]
    rows = {r["label"]: r for r in sections["2.4.1"]["rows"]}
    assert set(rows) == {"alpha=0.1", "alpha=0.01", "alpha=0.001"}
    assert rows["alpha=0.1"]["n_seeds"] == 2 and rows["alpha=0.1"]["published"]["accuracy"] == 88.37
    # Our figure straight from the runs: the mean test accuracy of the two seeds' fits.
    from mnist_mlp.study import load_experiment

    experiment = tracked.get_experiment_by_name(load_experiment("2.4.1").experiment_name)
    fits = [r for r in tracked.search_runs([experiment.experiment_id])
            if r.data.tags.get("role") == "fold" and float(r.data.params["alpha"]) == 0.1]
    assert sorted(r.data.params["random_state"] for r in fits) == ["0", "1"]
    ours = 100 * sum(r.data.metrics["test_accuracy"] for r in fits) / 2
    assert rows["alpha=0.1"]["accuracy"] == pytest.approx(ours, abs=1e-9)
    assert rows["alpha=0.1"]["delta"] == pytest.approx(ours - 88.37, abs=1e-9)
    assert rows["alpha=0.01"]["weight_updates"] == 1  # ceil(240 / 256) x 1 epoch

    paths = write_report(tmp_path / "report")
    markdown, html, data = (p.read_text() for p in paths)
    assert "| alpha=0.1 | 2 |" in markdown and "88.37" in markdown
    assert "_Not run yet: `mnist-mlp study 2.2`._" in markdown
    assert "<table>" in html and "2.4.1 L2 with RMSprop" in html
    # Quick runs say so, at the top and in their sections; the summary lists every row.
    assert "> **Not full fidelity.** 2.3, 2.4.1 ran with fewer epochs" in markdown
    assert markdown.count("> **Quick run** (1 epoch, 300 training images)") == 2
    assert "| 2.4.1 | alpha=0.001 | 2 |" in markdown and "| 2.3 | (single setting) | 1 |" in markdown
    assert "**What ran.** A grid search: 6 fits of 1 epoch each, over alpha {0.1, 0.01, 0.001}; seed {0, 1}" \
        in markdown
    _assert_same_content(markdown, html)
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").iterdir())
    assert "2.4.1-0-curves.png" in figures and "2.3-0-weights.png" in figures
    assert json.loads(data)["sections"][3]["name"] == "2.4.1"
    # Each report names the versions its runs were made with.
    from importlib.metadata import version

    assert json.loads(data)["environment"]["numpy"] == [version("numpy")]
    assert "## Environment" in markdown and f"| numba | {version('numba')} |" in markdown


@pytest.mark.slow
def test_a_rerun_with_more_seeds_adds_to_the_rows_and_a_quick_run_does_not(tracked, embedded):
    run_experiment("2.5.1", embedded, epochs=1, n_train=300, seeds=[0, 1])
    run_experiment("2.5.1", embedded, epochs=1, n_train=300, seeds=[1, 2])  # seed 1 again: newer counts
    (row,) = {s["name"]: s for s in collect()}["2.5.1"]["rows"]
    assert row["seeds"] == ["0", "1", "2"] and row["n_seeds"] == 3
    section = {s["name"]: s for s in collect()}["2.5.1"]
    assert len(section["run_ids"]) == 2
    run_experiment("2.5.1", embedded, epochs=2, n_train=300, seeds=[5])  # another fidelity: its own
    (row,) = {s["name"]: s for s in collect()}["2.5.1"]["rows"]
    assert row["seeds"] == ["5"]


@pytest.mark.slow
def test_the_tuning_section_reports_each_final_protocol(tracked, embedded, tmp_path):
    from mnist_mlp.study import run_tuning

    grid = {"classifier__learning_rate_init": [1e-3, 1e-2], "classifier__hidden_layer_sizes": [(16,)]}
    result = run_tuning(embedded, epochs=3, final_epochs=1, n_train=300, grid=grid,
                        final_protocols=("ours", "study"))
    assert [f["protocol"] for f in result["finals"]] == ["ours", "study"]
    # 2 candidates, one rung; the macro-F1 search reuses the accuracy search's fits, scored by F1.
    assert [s["epochs_trained"] for s in result["searches"].values()] == [2 * 3, 0]
    (section,) = [s for s in collect() if s["name"] == "3"]
    rows = {f["protocol"]: f["n_train"] for f in section["finals"]}
    assert rows == {"ours (all rows)": "300", "study (validation_split 0.2)": "240"}
    markdown, html = (p.read_text() for p in write_report(tmp_path / "report")[:2])
    for protocol, n_train in rows.items():
        assert f"| {protocol} | {n_train} |" in markdown
    _assert_same_content(markdown, html)
    assert "Hyperband over epochs (keras-tuner's brackets, factor 3, last rung 3 epochs" in markdown
    assert "| 3 | final network, ours (all rows) | 1 |" in markdown  # in the summary too
    with pytest.raises(ValueError, match="final_protocols must name some of ours, study"):
        run_tuning(embedded, final_protocols=("mine",))


def _cells(markdown):
    return [cell.strip() for line in markdown.splitlines() if line.startswith("|")
            for cell in line.strip("|").split("|") if cell.strip() and set(cell.strip()) - set("-: ")]


def _assert_same_content(markdown, html):
    """Every table cell, heading and paragraph of the Markdown is in the HTML's text."""
    import html as html_module
    import re

    inline = re.sub(r"</?(code|strong|em|a)\b[^>]*>", "", html)  # inline markup: no space of its own
    text = " ".join(html_module.unescape(re.sub(r"<[^>]+>", " ", inline)).split())
    for cell in _cells(markdown):
        plain = " ".join(re.sub(r"`|\*\*", "", cell).strip("_").split())
        assert plain in text, plain
    for line in markdown.splitlines():
        if line.startswith("#"):
            assert line.lstrip("# ").strip() in text


@pytest.mark.slow
def test_2_5_1_states_its_finding_beside_both_distributions(tracked, embedded, tmp_path):
    run_experiment("2.5.1", embedded, epochs=1, n_train=300, seeds=[0, 1, 2])
    markdown = write_report(tmp_path / "report")[0].read_text()
    from mnist_mlp.study import load_experiment

    reference = load_experiment("2.5.1").reference
    assert "**Finding.** The study's 82.26 % is not reproduced, not even by the study's own framework: in " \
           "tf.keras 2.15.1 the same network on the same data reaches 51.2 ± 24.3 % over seeds 0-5" in markdown
    assert "over seeds 0-2" in markdown
    assert f"| {reference['label']} | 6 | 42.5, 83.81, 71.91, 26.35, 58.33, 24.41 | 51.22 ± 24.31 |" in markdown
    assert (tmp_path / "report" / "figures" / "2.5.1-distributions.png").stat().st_size > 1000


def test_the_2_5_1_reference_is_the_committed_keras_results():
    """The report's Keras 2.15 seeds are the ones benchmarks/plain_keras_2_5_1.py measured."""
    from pathlib import Path

    from mnist_mlp.study import load_experiment

    reference = load_experiment("2.5.1").reference
    results = json.loads((Path(__file__).resolve().parents[1] / reference["source"]).read_text())
    assert reference["seeds"] == [r["seed"] for r in results["results"]]
    assert reference["accuracies"] == [r["test_accuracy_percent"] for r in results["results"]]
    assert results["keras"] in reference["label"]


def test_one_number_format_per_column():
    from mnist_mlp.study.report import _params, format_number

    assert [format_number(v, ",.0f") for v in (4.8e6, 4800000, 18800.0, None)] == ["4,800,000", "4,800,000", "18,800", "–"]
    assert [format_number(v, ".3g") for v in (0.536, 1.25e8, 2.3)] == ["0.536", "1.25e+08", "2.3"]
    assert _params({"classifier__hidden_layer_sizes": "[128, 256]", "classifier__alpha": "1e-06",
                    "classifier__learning_rate_init": "0.001"}) == "hidden=128-256, alpha=1e-06, lr=0.001"


def test_a_differing_environment_is_named_with_the_pinned_install(tmp_path):
    from mnist_mlp.study.environment import difference_note
    from mnist_mlp.tracking import library_versions

    here = library_versions()
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"environment": {"python": [here["python"]],
                                                  "numpy": [here["version.numpy"]]}}))
    assert difference_note(report) is None
    report.write_text(json.dumps({"environment": {"python": [here["python"]], "numpy": ["1.0.0"],
                                                  "numba": [here["version.numba"]], "not-installed": ["2.0"]}}))
    note = difference_note(report)
    assert f"numpy {here['version.numpy']} here, 1.0.0 there" in note
    assert "not-installed" not in note and "numba" not in note  # an optional extra absent is no difference
    assert "-c constraints.txt" in note
    assert difference_note(tmp_path / "absent.json") is None
    # The same versions on another CPU: the pins cannot help, and the note says so.
    report.write_text(json.dumps({"environment": {"numpy": [here["version.numpy"]], "cpu": ["some-other-cpu"]}}))
    note = difference_note(report)
    assert f"cpu {here['cpu']} here, some-other-cpu there" in note
    assert "another CPU or BLAS kernel" in note and "constraints.txt" not in note


@pytest.mark.slow  # six fits of 3 x 1024 on 300 images
def test_section_4_stands_beside_the_dropout_papers_table_once_it_ran(tracked, embedded, tmp_path):
    assert "4" not in {s["name"] for s in collect()}  # beyond the study: not listed as "not run yet"
    run_experiment("4", embedded, epochs=1, n_train=300, seeds=[0, 1])
    sections = {s["name"]: s for s in collect()}
    assert list(sections)[-2:] == ["3", "4"] and sections["4"]["ran"]
    rows = {r["label"]: r for r in sections["4"]["rows"]}
    assert set(rows) == {"standard neural net, no dropout", "dropout, ReLU, 3 x 1024",
                         "dropout + max-norm, ReLU, 3 x 1024"}
    max_norm = rows["dropout + max-norm, ReLU, 3 x 1024"]
    assert max_norm["n_seeds"] == 2 and max_norm["delta"] == pytest.approx(max_norm["accuracy"] - 98.94)
    markdown, html, _ = (p.read_text() for p in write_report(tmp_path / "report"))
    assert "## 4 Dropout paper MLPs" in markdown
    accuracies = ", ".join(str(round(a, 2)) for a in max_norm["accuracies"])
    assert (f"| dropout + max-norm, ReLU, 3 x 1024 | 1.06 | 98.94 | 2 | {accuracies} | "
            f"{max_norm['accuracy']:.2f} ± {max_norm['accuracy_sd']:.2f} | {max_norm['delta']:+.2f} |") in markdown
    assert "| dropout + max-norm, ReLU, 2 x 8192 | 0.95 | 99.05 | – | not rerun |" in markdown
    assert "on 300 training images (none held out: every network trains on all of them)" in markdown
    assert "not comparable with the paper's figures" in markdown
    assert "| 4 |" not in markdown  # the summary is the study's: section 4 is beside its own paper
    _assert_same_content(markdown, html)
    figures = {p.name for p in (tmp_path / "report" / "figures").iterdir()}
    assert {"4-2-curves.png", "4-2-weights.png"} <= figures
    # Its MLflow experiment says whose figures they are.
    from mnist_mlp.study import load_experiment

    note = tracked.get_experiment_by_name(load_experiment("4").experiment_name).tags["mlflow.note.content"]
    assert "The paper published:" in note and (
        "- dropout + max-norm, ReLU, 3 x 1024 (input_dropout=0.2, dropout=0.5, max_norm=3): test accuracy 98.94%"
        in note), note


def test_a_section_beyond_the_study_lists_the_papers_rows_in_its_order():
    from mnist_mlp.study import load_experiment
    from mnist_mlp.study.report import _beside, _same

    experiment = load_experiment("4")
    ours = {"label": "dropout, ReLU, 3 x 1024", "published": experiment.published[1], "accuracy": 98.5}
    mine = {"label": "hidden_layer_sizes=[64]", "published": {}, "accuracy": 97.0}
    table = _beside(experiment, [mine, ours])
    assert [b["label"] for b in table] == [p["label"] for p in experiment.published] + [mine["label"]]
    assert table[1]["ours"] is ours and table[0]["ours"] is None and table[-1]["ours"] is mine
    assert table[2]["error"] == pytest.approx(1.06) and table[-1]["published"] is None
    # No max-norm is a grid's None, which MLflow holds as JSON's null.
    assert _same("null", None) and not _same("3.0", None) and _same("3.0", 3.0)
