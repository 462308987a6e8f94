"""The study report, read back from MLflow."""

from __future__ import annotations

import json

import pytest

from mnist_mlp.study import collect, write_report
from mnist_mlp.study import run_experiment


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
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").iterdir())
    assert "2.4.1-0-curves.png" in figures and "2.3-0-weights.png" in figures
    assert json.loads(data)["sections"][3]["name"] == "2.4.1"


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


def test_the_tuning_section_reports_each_final_protocol(tracked, embedded, tmp_path):
    from mnist_mlp.study import run_tuning

    grid = {"classifier__learning_rate_init": [1e-3, 1e-2], "classifier__hidden_layer_sizes": [(16,)]}
    result = run_tuning(embedded, epochs=3, final_epochs=1, n_train=300, grid=grid,
                        final_protocols=("ours", "study"))
    assert [f["protocol"] for f in result["finals"]] == ["ours", "study"]
    assert {s["epochs_trained"] for s in result["searches"].values()} == {2 * 3}  # 2 candidates, one rung
    (section,) = [s for s in collect() if s["name"] == "3"]
    rows = {f["protocol"]: f["n_train"] for f in section["finals"]}
    assert rows == {"ours (all rows)": "300", "study (validation_split 0.2)": "240"}
    markdown, html = (p.read_text() for p in write_report(tmp_path / "report")[:2])
    for protocol, n_train in rows.items():
        assert f"| {protocol} | {n_train} |" in markdown
        assert f"<td>{protocol}</td><td>{n_train}</td>" in html
    assert "HyperbandSearchCV" in markdown
    with pytest.raises(ValueError, match="final_protocols must name some of ours, study"):
        run_tuning(embedded, final_protocols=("mine",))
