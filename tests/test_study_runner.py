"""The study's experiments: their definitions, split, runner and tuning."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import artifact_paths

from mnist_mlp.model_selection import TrainValidationSplit
from mnist_mlp.study import (
    count_fits, experiment_names, load_experiment, run_budget_tuning, run_experiment, run_tuning,
)


def test_split_trains_on_all_and_scores_the_keras_validation_tail():
    (train, test), = TrainValidationSplit(0.2).split(np.zeros((10, 2)))
    np.testing.assert_array_equal(train, np.arange(10))
    np.testing.assert_array_equal(test, [8, 9])
    (_, test), = TrainValidationSplit(0.2).split(np.zeros((1001, 2)))
    assert test[0] == 800  # floor(1001 * 0.8), as Keras splits
    assert TrainValidationSplit().get_n_splits() == 1


@pytest.mark.parametrize(
    "section, grid, fixed",
    [
        ("2.1", {"classifier__batch_size": [1, 256, 48_000]}, {"optimizer": "adam", "learning_rate_init": 0.001}),
        ("2.2", {"classifier__optimizer__rho": [0.01, 0.99]}, {"optimizer": "rmsprop", "batch_size": 256}),
        ("2.3", {}, {"optimizer": "sgd", "learning_rate_init": 0.01}),
        ("2.4.1", {"classifier__alpha": [0.1, 0.01, 0.001]}, {"penalty": "l2", "optimizer__rho": 0.99}),
        ("2.4.2", {"classifier__alpha": [0.1, 0.01, 0.001]}, {"penalty": "l2", "optimizer": "sgd"}),
        ("2.5.1", {}, {"penalty": "l1", "alpha": 0.01, "dropout": 0.3, "optimizer": "rmsprop"}),
        ("2.5.2", {}, {"penalty": "l1", "alpha": 0.01, "dropout": 0.3, "optimizer": "sgd"}),
    ],
)
def test_sections_declare_the_studys_grids(section, grid, fixed):
    experiment = load_experiment(section)
    search = experiment.make_search()
    assert {k: v for k, v in search.param_grid.items() if not k.endswith("random_state")} == grid
    clf = search.estimator["classifier"]
    assert clf.epochs == 100 and clf.validation_split == 0.2 and clf.shuffle is False
    for key, value in fixed.items():
        assert clf.get_params()[key] == value
    assert isinstance(search.cv, TrainValidationSplit) and search.refit is False
    assert experiment.published and experiment.description.startswith(section)
    if "normal" in experiment.title:
        assert clf.kernel_initializer.get_config()["mean"] == 10.0


def test_under_fitting_sections_repeat_over_three_seeds():
    for section in ("2.4.1", "2.5.1"):
        assert load_experiment(section).make_search().param_grid["classifier__random_state"] == [0, 1, 2]


def test_tuning_is_the_studys_36_point_grid_by_hyperband_over_epochs():
    search = load_experiment("3").make_search()
    assert type(search).__name__ == "HyperbandSearchCV" and search.factor == 3
    assert (search.max_resources, search.brackets) == (81, [3])  # 3 -> 9 -> 27 -> 81 epochs
    assert count_fits(search) == 36 + 12 + 4 + 2
    assert load_experiment("3").make_search(epochs=9).brackets == [1]  # first rung 3 epochs
    assert load_experiment("3").make_search(epochs=2).brackets == [0]  # quick runs: no rungs
    clf = search.estimator["classifier"]
    assert (clf.optimizer, clf.kernel_initializer, clf.penalty) == ("rmsprop", "he_normal", "l2")
    assert type(load_experiment("3").make_search(method="grid")).__name__ == "GridSearchCV"
    assert type(load_experiment("3").make_search(method="halving-rows")).__name__ == "HalvingGridSearchCV"
    assert load_experiment("3").make_search(scoring="f1_macro").scoring == "f1_macro"


def test_the_wide_tuning_space_reaches_beyond_the_study():
    wide = load_experiment("3").make_search(method="grid", wide=True)
    grid = wide.param_grid
    assert (512, 512) in grid["classifier__hidden_layer_sizes"] and 0.2 in grid["classifier__dropout"]
    assert count_fits(wide) == 4 * 2 * 2 * 2


@pytest.mark.slow  # two fits of 3 x 1024 (about 5 s with the first fit's start-up)
def test_the_budget_space_holds_the_dropout_papers_networks_and_trains_them_compiled(digits, monkeypatch):
    monkeypatch.setenv("MNIST_MLP_TRACKING", "0")
    search = load_experiment("3").make_search(space="dropout", budget=60.0)
    assert search.time_budget == 60.0 and search.candidates == "hyperband" and search.brackets is None
    grid = search.param_grid
    # The paper's best MLP row: 3 x 1024, ReLU, dropout 0.5, input dropout 0.2, max-norm 3.
    paper = {"classifier__hidden_layer_sizes": (1024, 1024, 1024), "classifier__dropout": 0.5,
             "classifier__input_dropout": 0.2, "classifier__max_norm": 3.0}
    assert all(value in grid[key] for key, value in paper.items())
    assert {"constant", "cosine"} <= set(grid["classifier__learning_rate"])
    x_train, y_train, _, _ = digits
    for learning_rate, alpha in (("cosine", 1e-5), ("constant", 0.0)):
        fitted = search.estimator.set_params(**paper, classifier__learning_rate=learning_rate,
                                             classifier__alpha=alpha, classifier__epochs=1)
        fitted.fit(x_train[:300], y_train[:300])
        assert fitted[-1].training_loop_ == "compiled", fitted[-1].training_loop_reason_
    # Where JAX sees a GPU (simulated: JAX trains on its CPU here), "auto" picks the XLA loop by itself.
    from mnist_mlp.training import devices

    monkeypatch.setattr(devices, "jax_gpus", lambda: ["NVIDIA H200"])
    assert search.estimator.fit(x_train[:300], y_train[:300])[-1].training_loop_ == "xla"
    with pytest.raises(ValueError, match="a time budget needs method='hyperband'"):
        load_experiment("3").make_search(space="dropout", budget=60.0, method="grid")
    with pytest.raises(ValueError, match="space must be one of study, wide, dropout"):
        load_experiment("3").make_search(space="paper")


@pytest.mark.slow
def test_budget_tuning_stops_the_search_and_fits_the_final_network_in_what_is_left(tracked, embedded):
    """A budget spent by the first rung: the search stops there, the final network gets 1 epoch."""
    result = run_budget_tuning(embedded, 1e-3, n_train=600)
    bought = result["budget"]
    parent = tracked.get_run(result["searches"]["accuracy"]["run_id"])
    # Bracket 2 of R=9 starts 9 candidates at 1 epoch: that first rung is all the search runs.
    assert (bought["fits"], bought["epochs"], len(bought["best_score_history"])) == (9, 9, 1)
    assert bought["final_epochs"] == 1
    assert parent.data.params["budget_s"] == "0.001" and float(parent.data.params["time_budget"]) > 0
    assert parent.data.tags["space"] == "dropout"
    assert parent.data.metrics["fits_in_budget"] == 9 and parent.data.metrics["epochs_trained"] == 9
    assert parent.data.metrics["budget_spent_s"] == pytest.approx(bought["spent_s"])
    history = tracked.get_metric_history(parent.info.run_id, "best_score_so_far")
    assert [(m.step, m.value) for m in history] == [(9, pytest.approx(result["searches"]["accuracy"]["best_score"]))]
    final = tracked.get_run(result["final"]["run_id"])
    assert final.data.params["epochs"] == "1" and final.data.tags["space"] == "dropout"
    assert result["final"]["registered"]["champion"] is True
    with pytest.raises(ValueError, match="budget_s must be a positive number"):
        run_budget_tuning(embedded, 0)


def test_unknown_experiment():
    with pytest.raises(ValueError, match="unknown experiment '9'"):
        load_experiment("9")
    assert experiment_names()[0] == "2.1" and experiment_names()[-1] == "3"


@pytest.mark.slow
def test_run_experiment_files_runs_by_section_and_scores_the_test_set(tracked, embedded):
    result = run_experiment("2.2", embedded, epochs=2, n_train=600)
    experiment = tracked.get_experiment_by_name(load_experiment("2.2").experiment_name)
    runs = tracked.search_runs([experiment.experiment_id])
    parent = [r for r in runs if r.data.tags.get("role") == "search"][0]
    children = [r for r in runs if r.data.tags.get("role") == "fold"]
    assert parent.info.run_id == result["run_id"] and parent.data.tags["section"] == "2.2"
    assert sorted(float(c.data.params["rho"]) for c in children) == [0.01, 0.99]
    for child in children:
        assert 0 < child.data.metrics["test_accuracy"] <= 1
        assert child.data.params["n_train"] == "480" and child.data.params["n_val"] == "120"
    # The search's score is the accuracy on the same tail Keras validated on.
    by_rho = {float(c.data.params["rho"]): c for c in children}
    for row in result["results"]:
        child = by_rho[row["params"]["classifier__optimizer__rho"]]
        assert row["validation_score"] == pytest.approx(child.data.metrics["val_accuracy"], abs=1e-6)


@pytest.mark.slow
def test_tuning_trains_the_best_afresh_and_evaluates_it(tracked, embedded):
    grid = {"classifier__hidden_layer_sizes": [(16, 32)], "classifier__learning_rate_init": [1e-3, 1e-2]}
    result = run_tuning(embedded, epochs=1, final_epochs=2, n_train=900, grid=grid)
    assert set(result["searches"]) == {"accuracy", "f1_macro"}
    final = tracked.get_run(result["final"]["run_id"])
    assert final.data.tags["role"] == "final" and final.info.status == "FINISHED"
    assert final.data.tags["space"] == "custom"  # the grid given here, neither the study's nor --wide
    assert final.data.params["epochs"] == "2"
    assert float(final.data.params["learning_rate"]) == \
        result["searches"]["accuracy"]["best_params"]["classifier__learning_rate_init"]
    assert final.data.metrics["test_accuracy"] == pytest.approx(result["final"]["test_accuracy"])
    artifacts = set(artifact_paths(tracked, final.info.run_id))
    assert {"model", "confusion_matrix.png", "learning_curves.png"} <= artifacts
    # The final network is the registry's champion: served as models:/mnist-mlp@champion.
    assert result["final"]["registered"] == {"name": "mnist-mlp", "version": 1, "champion": True,
                                             "previous_champion": None}
    import mlflow

    (x_train, y_train), (x_test, _) = embedded
    served = mlflow.pyfunc.load_model("models:/mnist-mlp@champion")
    fitted = mlflow.sklearn.load_model(final.data.tags["model_uri"])
    np.testing.assert_array_equal(served.predict(x_test[:20]), fitted.predict(x_test[:20]))
    assert final.data.tags["fidelity"] == "quick" and final.info.run_name.startswith("final network")


@pytest.mark.slow
def test_a_divergent_section_runs_to_the_end_and_the_study_goes_on(tracked, embedded):
    """2.3's mean-10 start: logged honestly, tagged, never a crash; the next section still runs."""
    run_experiment("2.3", embedded, epochs=2, n_train=600)
    run_experiment("2.2", embedded, epochs=1, n_train=300)
    experiment = tracked.get_experiment_by_name(load_experiment("2.3").experiment_name)
    (fit,) = [r for r in tracked.search_runs([experiment.experiment_id]) if r.data.tags.get("role") == "fold"]
    assert fit.info.status == "FINISHED" and fit.data.metrics["epochs_run"] == 2
    assert fit.data.tags["diverged"] == "true", fit.data.metrics  # its first loss is in the millions
    losses = sorted(tracked.get_metric_history(fit.info.run_id, "loss"), key=lambda m: m.step)
    assert losses[0].value > 1e6  # what the tag says: the first epoch's loss exploded
    assert fit.data.metrics["test_accuracy"] < 0.3  # at chance: the bad start ruins training
    assert len(tracked.get_metric_history(fit.info.run_id, "loss")) == 2
    second = tracked.get_experiment_by_name(load_experiment("2.2").experiment_name)
    assert {r.info.status for r in tracked.search_runs([second.experiment_id])} == {"FINISHED"}


def test_halving_never_trains_on_its_validation_rows():
    """Halving resamples the rows: the split itself must hold the tail out."""
    from sklearn.model_selection._search_successive_halving import _SubsampleMetaSplitter

    search = load_experiment("3").make_search(method="halving-rows")
    X = np.zeros((1000, 2))
    splitter = _SubsampleMetaSplitter(base_cv=search.cv, fraction=0.5, subsample_test=True,
                                      random_state=0)
    for train, test in splitter.split(X, np.arange(1000) % 10):
        assert not set(train) & set(test)
        assert test.min() >= 800  # the last fifth
    (train, test), = TrainValidationSplit(0.2, estimator_holds_out=False).split(X)
    np.testing.assert_array_equal(train, np.arange(800))


def test_a_full_fidelity_tuning_section_trains_both_final_protocols(monkeypatch, embedded):
    from mnist_mlp.study import runner

    calls = []
    monkeypatch.setattr(runner, "run_tuning", lambda data, **kwargs: calls.append(kwargs) or {})
    runner.run_experiment("3", embedded)                       # the study's own settings
    runner.run_experiment("3", embedded, epochs=2, n_train=300)  # a quick run
    assert [c["final_protocols"] for c in calls] == [("ours", "study"), ("ours",)]


@pytest.mark.slow
def test_a_rerun_resumes_its_search_run_and_says_what_it_reused(tmp_path, monkeypatch, capsys):
    """Rerunning a finished section trains nothing, and says so: the same search run, resumed
    (never an empty duplicate beside it), and a table whose rows are marked reused."""
    from mlflow.tracking import MlflowClient

    from mnist_mlp.cli import main

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MNIST_MLP_TRACKING", "1")
    args = ["study", "2.4.1", "--epochs", "1", "--n-train", "300", "--seeds", "0", "--tracking-uri", uri]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "Trained 3 fits now." in first and "reused" not in first.split("Quick run")[0]
    assert main(args) == 0
    second = capsys.readouterr().out
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(load_experiment("2.4.1").experiment_name)
    searches = client.search_runs([experiment.experiment_id], "tags.role = 'search'")
    assert len(searches) == 1  # resumed, not duplicated
    (search,) = searches
    assert search.info.status == "FINISHED" and search.data.tags["attempts"] == "2"
    assert search.data.metrics["fits_trained"] == 0 and search.data.metrics["fits_reused"] == 3
    assert "Resumed" in search.data.tags["mlflow.note.content"]
    table = second.split("Quick run")[0]
    assert table.count("reused") == 3 and "trained" not in table
    assert "Trained 0 fits now; reused 3 of 3" in second
    assert f"Parent run {search.info.run_id}, resumed" in second
    # Where the runs are, and the line that opens them.
    assert f"mlflow ui --backend-store-uri {uri}" in second and experiment.name in second


def test_section_4_reruns_the_dropout_papers_3x1024_rows_beyond_the_study():
    experiment = load_experiment("4")
    assert (experiment.title, experiment.published_by, experiment.beyond_the_study) == (
        "Dropout paper MLPs", "paper", True)
    assert experiment.description.startswith("4 Dropout paper MLPs (beyond the study)")
    assert "mnist-mlp study 4" in experiment.description  # the full-fidelity command
    assert experiment.experiment_name == "mnist-mlp study 4: Dropout paper MLPs"
    # `study all` is the study's own sections; the report and a named run reach section 4.
    assert "4" not in experiment_names() and experiment_names(beyond=True)[-1] == "4"
    assert not load_experiment("3").beyond_the_study and load_experiment("3").published_by == "study"
    search = experiment.make_search()
    clf = search.estimator["classifier"]
    assert (clf.hidden_layer_sizes, clf.optimizer, clf.learning_rate, clf.epochs) == (
        (1024, 1024, 1024), "adam", "cosine", 40)
    assert clf.validation_split == 0.0 and clf.shuffle is True
    # Three settings side by side, not crossed; the max-norm row over three seeds.
    rows = [{k: v[0] for k, v in g.items() if k != "classifier__random_state"} for g in search.param_grid]
    assert [(r["classifier__input_dropout"], r["classifier__dropout"], r["classifier__max_norm"]) for r in rows] == [
        (0.0, 0.0, None), (0.2, 0.5, None), (0.2, 0.5, 3.0)]
    assert all(g["classifier__random_state"] == [0, 1, 2] for g in search.param_grid)
    assert count_fits(search) == 9
    # Table 2 in the paper's order (error -> accuracy); each row rerun carries its grid point.
    published = {p["label"]: p for p in experiment.published}
    assert [round(100 - p["accuracy"], 2) for p in experiment.published] == [1.60, 1.25, 1.06, 1.04, 1.01, 0.95]
    assert published["dropout + max-norm, ReLU, 3 x 1024"]["params"] == {
        "classifier__input_dropout": 0.2, "classifier__dropout": 0.5, "classifier__max_norm": 3.0}
    assert [p["params"] for p in experiment.published[:3]] == rows
    # No row held out: the networks train on every row, the search scores the rows they trained on.
    (train, test), = search.cv.split(np.zeros((7, 2)))
    np.testing.assert_array_equal(train, np.arange(7))
    np.testing.assert_array_equal(test, np.arange(7))


@pytest.mark.slow  # three fits of 3 x 1024 (the first compiles the loop)
def test_section_4s_grid_trains_in_the_compiled_loop(digits, monkeypatch):
    from sklearn.base import clone
    from sklearn.model_selection import ParameterGrid

    monkeypatch.setenv("MNIST_MLP_TRACKING", "0")
    search = load_experiment("4").make_search(epochs=1, seeds=(0,))
    x_train, y_train, _, _ = digits
    for params in ParameterGrid(search.param_grid):
        fitted = clone(search.estimator).set_params(**params).fit(x_train[:300], y_train[:300])
        assert fitted[-1].training_loop_ == "compiled", (params, fitted[-1].training_loop_reason_)
        assert fitted[-1].n_iter_ == 1
