"""The study report: our tracked results beside the published ones, from MLflow.

:func:`collect` reads the study's runs back from any tracking URI into plain
rows; :func:`write_report` renders them, with the runs' figures, as Markdown
and HTML.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

from jinja2 import Environment, Undefined

from mnist_mlp.study.runner import FINAL_PROTOCOLS
from mnist_mlp.tracking import counted, format_value, grid_values, short_key

__all__ = ["collect", "collect_section", "format_number", "write_report"]

_METRICS = ("test_accuracy", "test_loss", "loss", "fit_time_s", "weight_updates", "test_f1_macro")


def _stable_name(key):
    """``classifier__optimizer__rho`` -> ``rho``: the param name our runs log."""
    name = key.split("__")[-1]
    return {"learning_rate_init": "learning_rate"}.get(name, name)


def _logged_value(value):
    """A grid value as our runs log it (lists and tuples as JSON lists)."""
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))
    return str(value)


def _same(logged, value):
    if value is None:  # "none" in a grid (no max-norm): MLflow holds it as JSON's null
        return logged in ("null", "None")
    try:
        return math.isclose(float(logged), float(value), rel_tol=1e-6)
    except (TypeError, ValueError):
        return logged == _logged_value(value)


def _spread(values):
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _latest(client, experiment_id, filter_string):
    """The newest FINISHED run matching the filter (an interrupted attempt is no result)."""
    runs = client.search_runs([experiment_id],
                              filter_string=f"{filter_string} and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0] if runs else None


def _final(run):
    """A final network's figures, read back from its run."""
    return {
        "run_id": run.info.run_id,
        "params": {k: run.data.params.get(k) for k in
                   ("hidden_layer_sizes", "dropout", "alpha", "learning_rate", "epochs")},
        "metrics": {k: v for k, v in run.data.metrics.items() if k.startswith("test_")},
        "wall_time_s": _wall_time(run),
        # Runs before the tag existed: all rows unless the fit held a validation tail out.
        "protocol": run.data.tags.get("final_protocol") or FINAL_PROTOCOLS[
            "ours" if run.data.params.get("n_val") in (None, "0") else "study"][1],
        "n_train": run.data.params.get("n_train"),
    }


def _fidelity(run):
    """``{"level": "full"|"quick"|None, "epochs", "rows"}`` of a section's newest search, from its tags
    (None for runs made before the tags existed)."""
    tags = run.data.tags
    return {"level": tags.get("fidelity"), "epochs": tags.get("scale.epochs"), "rows": tags.get("scale.train_rows")}


def _children(client, run):
    """The search's fits: its child runs, and earlier runs it reused on resume."""
    found = {}
    for tag in ("mlflow.parentRunId", "reused_by"):
        for child in client.search_runs(
            [run.info.experiment_id], filter_string=f"tags.`{tag}` = '{run.info.run_id}'",
            order_by=["attributes.start_time ASC"], max_results=5000,
        ):
            found.setdefault(child.info.run_id, child)
    return sorted(found.values(), key=lambda r: r.info.start_time)


def _wall_time(run):
    """Seconds the run took: a search's own ``wall_time_s`` (every call of a resumed search summed,
    not the days between them), else its start to its end."""
    if "wall_time_s" in run.data.metrics:
        return run.data.metrics["wall_time_s"]
    if run.info.end_time and run.info.start_time:
        return (run.info.end_time - run.info.start_time) / 1000
    return None


def _seed_order(seed):
    try:
        return (0, int(seed))
    except (TypeError, ValueError):
        return (1, str(seed))


def _grid_text(param_grid):
    """``alpha {0.1, 0.01}; lr {0.001}`` from a search's logged ``param_grid`` (JSON)."""
    try:
        grid = json.loads(param_grid)
    except (TypeError, ValueError):
        return str(param_grid or "")
    if isinstance(grid, list) and len(grid) > 1:  # settings side by side, not crossed
        return " and ".join(f"({_grid_text(json.dumps(one))})" for one in grid)
    parts = [f"{short_key(key)} {{{', '.join(format_value(tuple(v) if isinstance(v, list) else v) for v in values)}}}"
             for key, values in grid_values(grid).items()]
    return "; ".join(parts) or "a single setting"


def _what_ran(run):
    """One sentence: which search ran, over what, at what budget (from the parent run's params)."""
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    kind = params.get("search", "")
    n_fits = int(metrics.get("n_candidates", 0)) * int(metrics.get("n_splits", 1) or 1)
    epochs = tags.get("scale.epochs")
    if kind == "HyperbandSearchCV":
        text = (f"Hyperband over epochs (keras-tuner's brackets, factor {params.get('factor')}, last rung "
                f"{params.get('max_resources')} epochs, brackets {params.get('brackets')}), each rung continuing "
                f"the previous one's training: {counted(n_fits, 'fit')}")
        if "epochs_trained" in metrics:
            text += f", {int(metrics['epochs_trained']):,} epochs trained"
    elif kind == "HalvingGridSearchCV":
        text = (f"Successive halving over training rows (factor {params.get('factor')}): {counted(n_fits, 'fit')}"
                + (f" of {counted(epochs, 'epoch')}" if epochs else ""))
    else:
        text = f"A grid search: {counted(n_fits, 'fit')}" + (f" of {counted(epochs, 'epoch')} each" if epochs else "")
    text += f", over {_grid_text(params.get('param_grid'))}"
    rows = tags.get("scale.train_rows")
    if rows:
        # Searches logged before the split was recorded held out the study's tail.
        held_out = "TrainValidationSplit" in params.get("cv", "TrainValidationSplit")
        text += f", on {int(rows):,} training images " + (
            "(validation: the last 20 %)" if held_out else "(none held out: every network trains on all of them)")
    wall = _wall_time(run)
    return text + (f"; {wall / 60:.1f} min" if wall else "") + "."


def _finding(experiment, row):
    """The section's stated finding (2.5.1), filled in with both distributions' figures."""
    reference = experiment.reference
    ours = row.get("accuracies") or []
    if not (experiment.finding and reference and len(ours) > 1):
        return None

    def seeds(values):
        values = [int(v) for v in values]
        return f"{min(values)}-{max(values)}" if values == list(range(min(values), max(values) + 1)) else \
            ", ".join(map(str, values))

    return experiment.finding.format(
        reference_mean=statistics.fmean(reference["accuracies"]), reference_sd=statistics.stdev(reference["accuracies"]),
        reference_seeds=seeds(reference["seeds"]), reference_max=max(reference["accuracies"]),
        reference_n=len(reference["accuracies"]), ours_mean=statistics.fmean(ours), ours_sd=statistics.stdev(ours),
        ours_seeds=seeds([s for s in row["seeds"] if str(s).lstrip("-").isdigit()]),
    )


def _rows(experiment, children):
    """One row per grid point (seeds pooled), matched to the published figures (named as they are, where they
    have a name)."""
    grid_keys = [k for k in grid_values(experiment.make_search(epochs=1).param_grid) if not k.endswith("random_state")]
    groups = {}
    for child in children:
        key = tuple((k, child.data.params.get(_stable_name(k))) for k in grid_keys)
        groups.setdefault(key, []).append(child)
    rows = []
    for key, runs in groups.items():
        label = ", ".join(f"{_stable_name(k)}={v}" for k, v in key) or "(single setting)"
        published = next(
            (p for p in experiment.published
             if all(_same(dict(key).get(k), v) for k, v in p["params"].items())),
            {},
        )
        stats = {m: _spread([r.data.metrics.get(m) for r in runs]) for m in _METRICS}
        accuracy = stats["test_accuracy"][0]
        rows.append({
            "label": published.get("label", label),
            "run_ids": [r.info.run_id for r in runs],
            "n_seeds": len(runs),
            "seeds": sorted(r.data.params.get("random_state") for r in runs),
            "accuracies": [100 * r.data.metrics["test_accuracy"] for r in
                           sorted(runs, key=lambda r: _seed_order(r.data.params.get("random_state")))
                           if r.data.metrics.get("test_accuracy") is not None],
            "accuracy": None if accuracy is None else 100 * accuracy,
            "accuracy_sd": None if stats["test_accuracy"][1] is None else 100 * stats["test_accuracy"][1],
            "loss": stats["test_loss"][0],
            "train_loss": stats["loss"][0],
            "fit_time_s": stats["fit_time_s"][0],
            "weight_updates": stats["weight_updates"][0],
            "diverged": sum(r.data.tags.get("diverged") == "true" for r in runs),
            "published": published,
            "delta": None if accuracy is None or "accuracy" not in published
            else 100 * accuracy - published["accuracy"],
            "run_ids": [r.info.run_id for r in runs],
        })
    return rows


def collect(tracking_uri=None):
    """Read the study's runs into plain dicts, a section each.

    Parameters
    ----------
    tracking_uri : str, default=None
        Any MLflow tracking URI; None uses MLflow's current one.

    Returns
    -------
    list of dict
    """
    from mnist_mlp.study.experiments import experiment_names

    client = _client(tracking_uri)
    study = [_section(client, name) for name in experiment_names()]
    # A section beyond the study is in the report once it ran; the study's own are there to say what is left to run.
    return study + [section for section in (_section(client, name) for name in experiment_names(beyond=True)
                                            if name not in experiment_names()) if section["ran"]]


def collect_section(name, tracking_uri=None):
    """One section of :func:`collect`: section ``name`` (e.g. ``"2.4.1"``, or ``"4"``, run or not)."""
    return _section(_client(tracking_uri), name)


def _client(tracking_uri):
    import mlflow
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri or mlflow.get_tracking_uri())


def _section(client, name):
    from mnist_mlp.study.experiments import load_experiment

    experiment = load_experiment(name)
    found = client.get_experiment_by_name(experiment.experiment_name)
    section = {"name": name, "title": experiment.title, "description": experiment.description,
               "published": experiment.published, "published_by": experiment.published_by, "ran": False}
    if found is None:
        return section
    if experiment.final_epochs:  # a tuning section: its searches and final network
        final = _latest(client, found.experiment_id, "tags.role = 'final'")
        searches, search_runs = {}, {}
        for scoring in ("accuracy", "f1_macro"):
            run = _latest(client, found.experiment_id,
                          f"tags.role = 'search' and tags.scoring = '{scoring}'")
            if run is not None:
                search_runs[scoring] = run
                searches[scoring] = {
                    "run_id": run.info.run_id,
                    "best": {k[5:]: v for k, v in run.data.params.items() if k.startswith("best.")},
                    "best_score": run.data.metrics.get("best_score"),
                    "method": run.data.params.get("search", ""),
                    "space": run.data.tags.get("space", "–"),
                    "n_fits": len(_children(client, run)),
                    "wall_time_s": _wall_time(run),
                    "what_ran": _what_ran(run),
                }
        section.update(ran=final is not None, searches=searches)
        if final is not None:
            section["fidelity"] = _fidelity(search_runs.get("accuracy") or final)
            section["final"] = _final(final)
            # The newest final network of each protocol (a full-fidelity study trains both).
            by_protocol = [_latest(client, found.experiment_id,
                                   f"tags.role = 'final' and tags.final_protocol = '{tag}'")
                           for _, tag in FINAL_PROTOCOLS.values()]
            section["finals"] = [_final(run) for run in by_protocol if run is not None]
        return section
    parents, children = _pooled_fits(client, found.experiment_id)
    if not parents:
        return section
    walls = [_wall_time(p) for p in parents]
    section["fidelity"] = _fidelity(parents[0])
    section["what_ran"] = " ".join(_what_ran(p) for p in parents)
    section.update(ran=True, run_id=parents[0].info.run_id,
                   run_ids=[p.info.run_id for p in parents],
                   wall_time_s=sum(w for w in walls if w) or None,
                   rows=_rows(experiment, children))
    if experiment.beyond_the_study:
        section["beside"] = _beside(experiment, section["rows"])
    if experiment.reference and section["rows"]:
        section["reference"] = experiment.reference
        section["finding"] = _finding(experiment, section["rows"][0])
    return section


def _beside(experiment, rows):
    """A section beyond the study, as its paper's table: every published row in the paper's order with ours where
    we reran it, then any row of ours the paper has not (a grid of one's own)."""
    ours = {row["published"].get("label"): row for row in rows if row["published"]}
    table = [{"label": p["label"], "error": 100 - p["accuracy"], "published": p["accuracy"], "ours": ours.get(p["label"])}
             for p in experiment.published]
    return table + [{"label": row["label"], "error": None, "published": None, "ours": row}
                    for row in rows if not row["published"]]


#: Params that make two fits of a section comparable (same data, same length).
_FIDELITY = ("epochs", "n_train", "n_val", "dataset")


def _pooled_fits(client, experiment_id):
    """The section's fits at the fidelity of its newest search, seeds of every search pooled.

    A section re-run with more seeds (``--seeds 3,4,5``) adds to the rows of
    the earlier run instead of hiding it; a quick run at other epochs or data
    sizes is left out. Where a seed ran twice, the newer fit counts.

    Returns
    -------
    parents : list of Run
        The searches whose fits are pooled, newest first.
    children : list of Run
    """
    searches = client.search_runs(
        [experiment_id], filter_string="tags.role = 'search' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=500,
    )
    pooled, fidelity = {}, None
    by_id = {search.info.run_id: search for search in searches}
    for search in searches:
        fits = [c for c in _children(client, search) if c.data.tags.get("role") == "fold"]
        if not fits:
            continue
        mine = {tuple(c.data.params.get(k) for k in _FIDELITY) for c in fits}
        fidelity = fidelity or mine
        if mine != fidelity:
            continue
        for fit in sorted(fits, key=lambda r: r.info.start_time, reverse=True):
            key = tuple(sorted((k, v) for k, v in fit.data.params.items() if k != "random_state"))
            # A fit reused on resume counts for the search that ran it (its time is there).
            origin = by_id.get(fit.data.tags.get("mlflow.parentRunId"), search)
            pooled.setdefault((key, fit.data.params.get("random_state")), (fit, origin))  # newest wins
    # Only the searches whose fits are shown.
    parents = {search.info.run_id: search for _, search in pooled.values()}
    parents = sorted(parents.values(), key=lambda r: r.info.start_time, reverse=True)
    return parents, sorted((fit for fit, _ in pooled.values()), key=lambda r: r.info.start_time)


def _download(client, run_id, artifact, target):
    try:
        local = client.download_artifacts(run_id, artifact, str(target.parent))
    except Exception:  # a failed or interrupted run may lack a figure
        return None
    Path(local).rename(target)
    return target.name


def _figures(client, sections, figures_dir):
    """Copy each row's first run's figures (and the tuned model's confusion matrix)."""
    figures_dir.mkdir(parents=True, exist_ok=True)
    for section in sections:
        for i, row in enumerate(section.get("rows", [])):
            run_id = row["run_ids"][0]
            stem = f"{section['name']}-{i}"
            row["figures"] = [
                f for f in (
                    _download(client, run_id, "learning_curves.png", figures_dir / f"{stem}-curves.png"),
                    _download(client, run_id, "weights_violin.png", figures_dir / f"{stem}-weights.png"),
                ) if f
            ]
        if "final" in section:
            run_id, stem = section["final"]["run_id"], "3-final"
            section["final"]["figures"] = [
                f for f in (
                    _download(client, run_id, "confusion_matrix.png", figures_dir / f"{stem}-confusion.png"),
                    _download(client, run_id, "learning_curves.png", figures_dir / f"{stem}-curves.png"),
                    _download(client, run_id, "weights_violin.png", figures_dir / f"{stem}-weights.png"),
                ) if f
            ]


def format_number(value, spec=".2f"):
    """One value in its column's format (every column has one); "–" where there is none."""
    if value is None or isinstance(value, Undefined):  # e.g. a figure the study did not publish
        return "–"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "–" if math.isnan(value) else format(value, spec)


def _params(params):
    """``hidden=128-256, alpha=1e-06``: parameters as the run names show them, not as quoted strings."""
    def value(v):
        try:
            return format_value(tuple(json.loads(v)) if str(v).startswith("[") else float(v)
                                if re.fullmatch(r"-?[\d.]+(e-?\d+)?", str(v)) else v)
        except ValueError:
            return str(v)

    return ", ".join(f"{short_key(k)}={value(v)}" for k, v in params.items() if v is not None) or "–"


def _summary(sections):
    """Every row of every section that ran, ours beside the study's."""
    rows = []
    for s in sections:
        if s.get("beside"):  # beyond the study: beside its own paper, in its section
            continue
        level = (s.get("fidelity") or {}).get("level") or "unknown"
        for r in s.get("rows", []):
            rows.append({"section": s["name"], "setting": r["label"], "seeds": r["n_seeds"], "ours": r["accuracy"],
                         "study": r["published"].get("accuracy"), "delta": r["delta"], "fidelity": level})
        for f in s.get("finals", []):
            ours = 100 * f["metrics"]["test_accuracy"] if f["metrics"].get("test_accuracy") is not None else None
            study = (s["published"] or [{}])[0].get("accuracy")
            rows.append({"section": s["name"], "setting": f"final network, {f['protocol']}", "seeds": 1,
                         "ours": ours, "study": study, "delta": None if None in (ours, study) else ours - study,
                         "fidelity": level})
    return rows


def _fidelity_note(section):
    fidelity = section.get("fidelity") or {}
    if fidelity.get("level") == "full" or not section.get("ran"):
        return None
    if fidelity.get("level") == "quick":
        rows = fidelity.get("rows")
        by = section.get("published_by", "study")
        return (f"**Quick run** ({counted(fidelity.get('epochs') or 0, 'epoch')}, {int(rows):,} training images): "
                "not comparable "
                f"with the {by}'s figures, which trained at full fidelity.") if rows else \
            f"**Quick run**: not comparable with the {by}'s figures."
    return "**Fidelity unknown** (runs made before fidelity was recorded): check the runs' epochs and rows."


_TEMPLATE = """# The MNIST MLP study, reproduced

Our figures, read back from MLflow, beside the study's published ones (test set).
Accuracy in %, mean ± standard deviation over the seeds where a row was repeated.
"Test loss (ours)" is the cross-entropy of the predictions (scikit-learn, whole test set); the
study's loss came from Keras, which adds the weight penalty to it, so for penalised networks
compare it with "Keras loss": the training loss of the last epoch, penalty included.
{% if total_wall %}Wall time of the runs in this report: {{ fmt(total_wall / 60, ".1f") }} min.{% endif %}

{% if not_full %}> **Not full fidelity.** {{ not_full|join(", ") }} ran with fewer epochs or training images than
> the study (or before fidelity was recorded): their figures are not comparable with the study's.
{% endif %}

## Summary

| section | setting | seeds | accuracy % (ours) | accuracy % (study) | Δ pts | fidelity |
| --- | --- | ---: | ---: | ---: | ---: | --- |
{% for r in summary %}| {{ r.section }} | {{ r.setting }} | {{ r.seeds }} | {{ fmt(r.ours) }} | {{ fmt(r.study) }} | {{ fmt(r.delta, "+.2f") }} | {{ r.fidelity }} |
{% endfor %}

{% for s in sections %}
## {{ s.name }} {{ s.title }}

{{ s.description }}

{% if s.note %}> {{ s.note }}
{% endif %}
{% if not s.ran %}_Not run yet: `mnist-mlp study {{ s.name }}`._
{% elif s.beside %}
**What ran.** {{ s.what_ran }}

| the {{ s.published_by }}'s row | test error % ({{ s.published_by }}) | accuracy % ({{ s.published_by }}) | seeds | accuracy % per seed (ours) | accuracy % (ours) | Δ pts | test loss (ours) | fit time s (ours) |
| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |
{% for b in s.beside %}{% set r = b.ours %}| {{ b.label }} | {{ fmt(b.error) }} | {{ fmt(b.published) }} | {% if r %}{{ r.n_seeds }} | {{ r.accuracies|map("round", 2)|join(", ") }} | {{ fmt(r.accuracy) }}{% if r.n_seeds > 1 %} ± {{ fmt(r.accuracy_sd) }}{% endif %} | {{ fmt(r.delta, "+.2f") }} | {{ fmt(r.loss, ".3f") }} | {{ fmt(r.fit_time_s, ",.0f") }}{% else %}– | not rerun | – | – | – | –{% endif %} |
{% endfor %}
Search run{% if s.run_ids|length > 1 %}s {% for r in s.run_ids %}`{{ r }}`{% if not loop.last %}, {% endif %}{% endfor %} (seeds pooled){% else %} `{{ s.run_id }}`{% endif %}{% if s.wall_time_s %}, {{ fmt(s.wall_time_s / 60, ".1f") }} min{% endif %}.

{% for r in s.rows %}{% for f in r.figures %}![{{ r.label }}](figures/{{ f }}) {% endfor %}
{% endfor %}
{% elif s.rows %}
**What ran.** {{ s.what_ran }}

| setting | seeds | accuracy % (ours) | accuracy % (study) | Δ pts | test loss (ours) | Keras loss (ours) | loss (study) | fit time s (ours) | fit time s (study) | weight updates (ours) | weight updates (study) | diverged |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{% for r in s.rows %}| {{ r.label }} | {{ r.n_seeds }} | {{ fmt(r.accuracy) }}{% if r.n_seeds > 1 %} ± {{ fmt(r.accuracy_sd) }}{% endif %} | {{ fmt(r.published.accuracy) }} | {{ fmt(r.delta, "+.2f") }} | {{ fmt(r.loss, ".3f") }} | {{ fmt(r.train_loss, ".3g") }} | {{ fmt(r.published.loss, ".3g") }} | {{ fmt(r.fit_time_s, ",.0f") }} | {{ fmt(r.published.fit_time_s, ",.0f") }} | {{ fmt(r.weight_updates, ",.0f") }} | {{ fmt(r.published.weight_updates, ",.0f") }} | {{ r.diverged }}/{{ r.n_seeds }} |
{% endfor %}
Search run{% if s.run_ids|length > 1 %}s {% for r in s.run_ids %}`{{ r }}`{% if not loop.last %}, {% endif %}{% endfor %} (seeds pooled){% else %} `{{ s.run_id }}`{% endif %}{% if s.wall_time_s %}, {{ fmt(s.wall_time_s / 60, ".1f") }} min{% endif %}.
{% if s.finding %}

**Finding.** {{ s.finding }}

| | seeds | test accuracy % per seed | mean ± sd |
| --- | ---: | --- | ---: |
| ours | {{ s.rows[0].n_seeds }} | {{ s.rows[0].accuracies|map("round", 2)|join(", ") }} | {{ fmt(s.rows[0].accuracy) }} ± {{ fmt(s.rows[0].accuracy_sd) }} |
| {{ s.reference.label }} | {{ s.reference.accuracies|length }} | {{ s.reference.accuracies|join(", ") }} | {{ fmt(mean(s.reference.accuracies)) }} ± {{ fmt(sd(s.reference.accuracies)) }} |
| the study | 1 | {{ fmt(s.published[0].accuracy) }} | – |

The reference's figures: `{{ s.reference.source }}`.
{% if s.distribution %}

![Test accuracy per seed: ours, the study's framework, the study](figures/{{ s.distribution }})
{% endif %}{% endif %}

{% for r in s.rows %}{% for f in r.figures %}![{{ r.label }}](figures/{{ f }}) {% endfor %}
{% endfor %}
{% elif s.final %}
| search | what ran | best validation score | best parameters |
| --- | --- | ---: | --- |
{% for scoring, x in s.searches.items() %}| {{ scoring }} | {{ x.what_ran }} Space: {{ x.space }}; run `{{ x.run_id }}`. | {{ fmt(x.best_score, ".4f") }} | {{ params(x.best) }} |
{% endfor %}
Final network, trained afresh with the accuracy search's best parameters ({{ params(s.final.params) }}), protocol {{ s.final.protocol }}: {{ fmt(s.final.n_train, ",.0f") }} training rows:

| metric | ours | study |
| --- | ---: | ---: |
| accuracy % | {{ fmt(100 * s.final.metrics.test_accuracy) }} | {{ fmt(s.published[0].accuracy) }} |
| macro F1 | {{ fmt(s.final.metrics.test_f1_macro, ".4f") }} | {{ fmt(s.published[0].f1_macro, ".4f") }} |
| macro precision | {{ fmt(s.final.metrics.test_precision_macro, ".4f") }} | – |
| macro recall | {{ fmt(s.final.metrics.test_recall_macro, ".4f") }} | – |
| test loss | {{ fmt(s.final.metrics.test_loss, ".4f") }} | – |

Study's best: {{ params(s.published[0].params) }}. Final run `{{ s.final.run_id }}`.
{% if s.finals|length > 1 %}
Both protocols, the same parameters:

| protocol | training rows | accuracy % | macro F1 | test loss | run |
| --- | ---: | ---: | ---: | ---: | --- |
{% for f in s.finals %}| {{ f.protocol }} | {{ fmt(f.n_train, ",.0f") }} | {{ fmt(100 * f.metrics.test_accuracy) }} | {{ fmt(f.metrics.test_f1_macro, ".4f") }} | {{ fmt(f.metrics.test_loss, ".4f") }} | `{{ f.run_id }}` |
{% endfor %}{% endif %}

{% for f in s.final.figures %}![final](figures/{{ f }}) {% endfor %}
{% endif %}
{% endfor %}
{% if environment %}
## Environment

The versions and machine these figures came from (the runs' `python`, `version.*`, `cpu` and `blas`
tags); another release of these libraries, or another CPU or BLAS kernel, can move a figure.
`constraints.txt` pins the tested versions (`pip install -e . -c constraints.txt`).

| | version |
| --- | --- |
{% for name, versions in environment.items() %}| {{ name }} | {{ versions|join(", ") }} |
{% endfor %}{% endif %}
"""

_HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>The MNIST MLP study, reproduced</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:.3em .6em}}
blockquote{{background:#fff4e5;border-left:4px solid #f0a020;margin:1em 0;padding:.5em 1em}}
img{{max-width:48%;margin:.2em}}</style></head><body>
{body}</body></html>
"""


def _markdown_to_html(markdown):
    """The report's HTML: the Markdown itself, rendered (CommonMark with tables), so the two cannot drift."""
    from markdown_it import MarkdownIt

    return _HTML_PAGE.format(body=MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown))


def _distributions(sections, figures_dir):
    """The 2.5.1 figure: test accuracy per seed, ours beside the reference framework's and the study's."""
    from mnist_mlp.plots import plot_accuracy_distributions

    for section in sections:
        if not section.get("finding"):
            continue
        reference = section["reference"]
        fig = plot_accuracy_distributions(
            {"ours": section["rows"][0]["accuracies"], reference["label"]: reference["accuracies"]},
            published=section["published"][0]["accuracy"], title=f"{section['name']}: test accuracy per seed")
        name = f"{section['name']}-distributions.png"
        fig.savefig(figures_dir / name, dpi=80)
        section["distribution"] = name


def _run_ids(sections):
    """Every run a report's figures come from: sections' searches and final networks."""
    ids = []
    for section in sections:
        ids += section.get("run_ids") or []
        ids += [search["run_id"] for search in section.get("searches", {}).values()]
        ids += [final["run_id"] for final in section.get("finals", [])]
    return ids


def write_report(output_dir, *, tracking_uri=None):
    """Write ``report.md``, ``report.html``, ``report.json`` and ``figures/`` into ``output_dir``.

    One template renders the Markdown; the HTML is that Markdown rendered,
    so both always hold the same content. Each ends with the versions of
    Python and of the libraries its runs were made with (JSON: ``environment``).

    Parameters
    ----------
    output_dir : str or os.PathLike
    tracking_uri : str, default=None

    Returns
    -------
    list of pathlib.Path
        The files written (Markdown, HTML, JSON).
    """
    from mnist_mlp.study import environment

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    sections = collect(tracking_uri)
    versions = environment.of_runs(_client(tracking_uri), _run_ids(sections))
    _figures(_client(tracking_uri), sections, output / "figures")
    _distributions(sections, output / "figures")
    walls = [s.get("wall_time_s") for s in sections] + [
        x.get("wall_time_s") for s in sections for x in s.get("searches", {}).values()
    ] + [s.get("final", {}).get("wall_time_s") for s in sections]
    total_wall = sum(w for w in walls if w) or None
    for section in sections:
        section["note"] = _fidelity_note(section)
    not_full = [s["name"] for s in sections if s["note"]]
    env = Environment(autoescape=False)
    env.globals.update(fmt=format_number, params=_params, mean=statistics.fmean, sd=statistics.stdev)
    markdown = env.from_string(_TEMPLATE).render(sections=sections, total_wall=total_wall, summary=_summary(sections),
                                                  not_full=not_full, environment=versions)
    markdown = re.sub(r"\n{3,}", "\n\n", markdown)
    paths = [output / "report.md", output / "report.html", output / "report.json"]
    paths[0].write_text(markdown)
    paths[1].write_text(_markdown_to_html(markdown))
    paths[2].write_text(json.dumps({"sections": sections, "total_wall_s": total_wall, "environment": versions},
                                   indent=2, default=str))
    return paths
