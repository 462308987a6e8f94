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

__all__ = ["collect", "write_report"]

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
    if run.info.end_time and run.info.start_time:
        return (run.info.end_time - run.info.start_time) / 1000
    return None


def _rows(experiment, children):
    """One row per grid point (seeds pooled), matched to the published figures."""
    grid_keys = [k for k in experiment.make_search(epochs=1).param_grid if not k.endswith("random_state")]
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
            "label": label,
            "n_seeds": len(runs),
            "seeds": sorted(r.data.params.get("random_state") for r in runs),
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
    import mlflow
    from mlflow.tracking import MlflowClient

    from mnist_mlp.study.experiments import experiment_names, load_experiment

    client = MlflowClient(tracking_uri or mlflow.get_tracking_uri())
    sections = []
    for name in experiment_names():
        experiment = load_experiment(name)
        found = client.get_experiment_by_name(experiment.experiment_name)
        section = {"name": name, "title": experiment.title, "description": experiment.description,
                   "published": experiment.published, "ran": False}
        sections.append(section)
        if found is None:
            continue
        if experiment.final_epochs:  # a tuning section: its searches and final network
            final = _latest(client, found.experiment_id, "tags.role = 'final'")
            searches = {}
            for scoring in ("accuracy", "f1_macro"):
                run = _latest(client, found.experiment_id,
                              f"tags.role = 'search' and tags.scoring = '{scoring}'")
                if run is not None:
                    searches[scoring] = {
                        "run_id": run.info.run_id,
                        "best": {k[5:]: v for k, v in run.data.params.items() if k.startswith("best.")},
                        "best_score": run.data.metrics.get("best_score"),
                        "method": run.data.params.get("search", ""),
                        "space": run.data.tags.get("space", "–"),
                        "n_fits": len(_children(client, run)),
                        "wall_time_s": _wall_time(run),
                    }
            section.update(ran=final is not None, searches=searches)
            if final is not None:
                section["final"] = _final(final)
                # The newest final network of each protocol (a full-fidelity study trains both).
                by_protocol = [_latest(client, found.experiment_id,
                                       f"tags.role = 'final' and tags.final_protocol = '{tag}'")
                               for _, tag in FINAL_PROTOCOLS.values()]
                section["finals"] = [_final(run) for run in by_protocol if run is not None]
            continue
        parents, children = _pooled_fits(client, found.experiment_id)
        if not parents:
            continue
        walls = [_wall_time(p) for p in parents]
        section.update(ran=True, run_id=parents[0].info.run_id,
                       run_ids=[p.info.run_id for p in parents],
                       wall_time_s=sum(w for w in walls if w) or None,
                       rows=_rows(experiment, children))
    return sections


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


def _fmt(value, spec=".2f"):
    if value is None or isinstance(value, Undefined):  # e.g. a figure the study did not publish
        return "–"
    if isinstance(value, float) and (abs(value) >= 1e5 or (value and abs(value) < 1e-3)):
        return f"{value:.3g}"
    return format(value, spec)


_MARKDOWN = """# The MNIST MLP study, reproduced

Our figures, read back from MLflow, beside the study's published ones (test set).
Accuracy in %, mean ± standard deviation over the seeds where a row was repeated.
"Test loss (ours)" is the cross-entropy of the predictions (scikit-learn, whole test set); the
study's loss came from Keras, which adds the weight penalty to it, so for penalised networks
compare it with "Keras loss": the training loss of the last epoch, penalty included.
{% if total_wall %}Wall time of the runs in this report: {{ fmt(total_wall / 60, ".1f") }} min.{% endif %}

{% for s in sections %}
## {{ s.name }} {{ s.title }}

{{ s.description }}

{% if not s.ran %}_Not run yet: `mnist-mlp study {{ s.name }}`._
{% elif s.rows %}
| setting | seeds | accuracy (ours) | accuracy (study) | Δ pts | test loss (ours) | Keras loss (ours) | loss (study) | fit time s (ours) | fit time s (study) | weight updates (ours) | weight updates (study) | diverged |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{% for r in s.rows %}| {{ r.label }} | {{ r.n_seeds }} | {{ fmt(r.accuracy) }}{% if r.n_seeds > 1 %} ± {{ fmt(r.accuracy_sd) }}{% endif %} | {{ fmt(r.published.accuracy) }} | {{ fmt(r.delta, "+.2f") }} | {{ fmt(r.loss, ".3f") }} | {{ fmt(r.train_loss, ".3g") }} | {{ fmt(r.published.loss) }} | {{ fmt(r.fit_time_s, ".0f") }} | {{ fmt(r.published.fit_time_s, ".0f") }} | {{ fmt(r.weight_updates, ".0f") }} | {{ fmt(r.published.weight_updates, ".0f") }} | {{ r.diverged }}/{{ r.n_seeds }} |
{% endfor %}
Search run{% if s.run_ids|length > 1 %}s {% for r in s.run_ids %}`{{ r }}`{% if not loop.last %}, {% endif %}{% endfor %} (seeds pooled){% else %} `{{ s.run_id }}`{% endif %}{% if s.wall_time_s %}, {{ fmt(s.wall_time_s / 60, ".1f") }} min{% endif %}.

{% for r in s.rows %}{% for f in r.figures %}![{{ r.label }}](figures/{{ f }}) {% endfor %}
{% endfor %}
{% elif s.final %}
| search | method | space | fits | best validation score | best parameters |
| --- | --- | --- | --- | --- | --- |
{% for scoring, x in s.searches.items() %}| {{ scoring }} | {{ x.method }} | {{ x.space }} | {{ x.n_fits }} | {{ fmt(x.best_score, ".4f") }} | {{ x.best }} |
{% endfor %}
Final network, trained afresh with the accuracy search's best parameters ({{ s.final.params }}), protocol {{ s.final.protocol }}: {{ s.final.n_train }} training rows:

| metric | ours | study |
| --- | --- | --- |
| accuracy (%) | {{ fmt(100 * s.final.metrics.test_accuracy) }} | {{ fmt(s.published[0].accuracy) }} |
| macro F1 | {{ fmt(s.final.metrics.test_f1_macro, ".4f") }} | {{ fmt(s.published[0].f1_macro, ".4f") }} |
| macro precision | {{ fmt(s.final.metrics.test_precision_macro, ".4f") }} | – |
| macro recall | {{ fmt(s.final.metrics.test_recall_macro, ".4f") }} | – |
| test loss | {{ fmt(s.final.metrics.test_loss, ".4f") }} | – |

Study's best: {{ s.published[0].params }}. Final run `{{ s.final.run_id }}`.
{% if s.finals|length > 1 %}
Both protocols, the same parameters:

| protocol | training rows | accuracy (%) | macro F1 | test loss | run |
| --- | --- | --- | --- | --- | --- |
{% for f in s.finals %}| {{ f.protocol }} | {{ f.n_train }} | {{ fmt(100 * f.metrics.test_accuracy) }} | {{ fmt(f.metrics.test_f1_macro, ".4f") }} | {{ fmt(f.metrics.test_loss, ".4f") }} | `{{ f.run_id }}` |
{% endfor %}{% endif %}

{% for f in s.final.figures %}![final](figures/{{ f }}) {% endfor %}
{% endif %}
{% endfor %}
"""

_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MNIST MLP study</title>
<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}img{max-width:48%;margin:.2em}</style></head><body>
<h1>The MNIST MLP study, reproduced</h1>
<p>Our figures, read back from MLflow, beside the study's published ones (test set). Accuracy in %,
mean ± standard deviation over the seeds where a row was repeated. "Test loss (ours)" is the
cross-entropy of the predictions; the study's loss came from Keras, penalty included: compare
penalised rows with "Keras loss", the last epoch's training loss, penalty included.
{% if total_wall %}Wall time of the runs in this report: {{ fmt(total_wall / 60, ".1f") }} min.{% endif %}</p>
{% for s in sections %}<h2>{{ s.name }} {{ s.title }}</h2><p>{{ s.description }}</p>
{% if not s.ran %}<p><em>Not run yet.</em></p>
{% elif s.rows %}<table><tr><th>setting</th><th>seeds</th><th>accuracy (ours)</th><th>accuracy (study)</th>
<th>Δ pts</th><th>test loss (ours)</th><th>Keras loss (ours)</th><th>loss (study)</th><th>fit time s (ours)</th>
<th>fit time s (study)</th><th>weight updates (ours)</th><th>weight updates (study)</th><th>diverged</th></tr>
{% for r in s.rows %}<tr><td>{{ r.label }}</td><td>{{ r.n_seeds }}</td>
<td>{{ fmt(r.accuracy) }}{% if r.n_seeds > 1 %} ± {{ fmt(r.accuracy_sd) }}{% endif %}</td>
<td>{{ fmt(r.published.accuracy) }}</td><td>{{ fmt(r.delta, "+.2f") }}</td><td>{{ fmt(r.loss, ".3f") }}</td>
<td>{{ fmt(r.train_loss, ".3g") }}</td>
<td>{{ fmt(r.published.loss) }}</td><td>{{ fmt(r.fit_time_s, ".0f") }}</td><td>{{ fmt(r.published.fit_time_s, ".0f") }}</td>
<td>{{ fmt(r.weight_updates, ".0f") }}</td><td>{{ fmt(r.published.weight_updates, ".0f") }}</td>
<td>{{ r.diverged }}/{{ r.n_seeds }}</td></tr>{% endfor %}</table>
{% for r in s.rows %}<div><strong>{{ r.label }}</strong><br>{% for f in r.figures %}<img src="figures/{{ f }}" alt="{{ r.label }}">{% endfor %}</div>{% endfor %}
{% elif s.final %}<table><tr><th>search</th><th>method</th><th>space</th><th>fits</th><th>best validation score</th><th>best parameters</th></tr>
{% for scoring, x in s.searches.items() %}<tr><td>{{ scoring }}</td><td>{{ x.method }}</td><td>{{ x.space }}</td><td>{{ x.n_fits }}</td><td>{{ fmt(x.best_score, ".4f") }}</td><td>{{ x.best }}</td></tr>{% endfor %}</table>
<table><tr><th>metric</th><th>ours</th><th>study</th></tr>
<tr><td>accuracy (%)</td><td>{{ fmt(100 * s.final.metrics.test_accuracy) }}</td><td>{{ fmt(s.published[0].accuracy) }}</td></tr>
<tr><td>macro F1</td><td>{{ fmt(s.final.metrics.test_f1_macro, ".4f") }}</td><td>{{ fmt(s.published[0].f1_macro, ".4f") }}</td></tr>
<tr><td>macro precision</td><td>{{ fmt(s.final.metrics.test_precision_macro, ".4f") }}</td><td>–</td></tr>
<tr><td>macro recall</td><td>{{ fmt(s.final.metrics.test_recall_macro, ".4f") }}</td><td>–</td></tr></table>
<p>Final parameters: {{ s.final.params }}; protocol {{ s.final.protocol }}: {{ s.final.n_train }} training rows</p>
{% if s.finals|length > 1 %}<table><tr><th>protocol</th><th>training rows</th><th>accuracy (%)</th><th>macro F1</th><th>test loss</th><th>run</th></tr>
{% for f in s.finals %}<tr><td>{{ f.protocol }}</td><td>{{ f.n_train }}</td><td>{{ fmt(100 * f.metrics.test_accuracy) }}</td><td>{{ fmt(f.metrics.test_f1_macro, ".4f") }}</td><td>{{ fmt(f.metrics.test_loss, ".4f") }}</td><td>{{ f.run_id }}</td></tr>{% endfor %}</table>{% endif %}
{% for f in s.final.figures %}<img src="figures/{{ f }}" alt="final">{% endfor %}
{% endif %}{% endfor %}</body></html>
"""


def write_report(output_dir, *, tracking_uri=None):
    """Write ``report.md``, ``report.html``, ``report.json`` and ``figures/`` into ``output_dir``.

    Parameters
    ----------
    output_dir : str or os.PathLike
    tracking_uri : str, default=None

    Returns
    -------
    list of pathlib.Path
        The files written (Markdown, HTML, JSON).
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    sections = collect(tracking_uri)
    client = MlflowClient(tracking_uri or mlflow.get_tracking_uri())
    _figures(client, sections, output / "figures")
    walls = [s.get("wall_time_s") for s in sections] + [
        x.get("wall_time_s") for s in sections for x in s.get("searches", {}).values()
    ] + [s.get("final", {}).get("wall_time_s") for s in sections]
    total_wall = sum(w for w in walls if w) or None
    env = Environment(autoescape=False)
    env.globals["fmt"] = _fmt
    paths = []
    for name, template, autoescape in (("report.md", _MARKDOWN, False), ("report.html", _HTML, True)):
        env.autoescape = autoescape
        path = output / name
        text = env.from_string(template).render(sections=sections, total_wall=total_wall)
        path.write_text(re.sub(r"\n{3,}", "\n\n", text))
        paths.append(path)
    json_path = output / "report.json"
    json_path.write_text(json.dumps({"sections": sections, "total_wall_s": total_wall}, indent=2, default=str))
    paths.append(json_path)
    return paths
