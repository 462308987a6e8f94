"""What ``mnist-mlp study`` and ``tune`` print when a section ends: its results table.

The figures are the report's (:func:`mnist_mlp.study.report.collect_section`,
read back from MLflow), so the terminal, the report and the MLflow UI never
disagree. Rendered with ``rich`` as plain text: no colour codes when the
output is a file or a pipe.
"""

from __future__ import annotations

import io

from mnist_mlp.study.report import format_number

__all__ = ["format_section", "format_tuning", "serve_command"]


def serve_command(model_name, alias="champion"):
    """The shell command that serves a registered model's alias, as ``docs/serving.md`` gives it.

    ``--env-manager local`` serves from the environment mnist-mlp runs in: MLflow's default
    builds a fresh virtualenv from the model's requirements, which needs pyenv and the network.

    Parameters
    ----------
    model_name : str
        The registered model's name, e.g. ``"mnist-mlp"``.
    alias : str, default="champion"
        The alias to serve.

    Returns
    -------
    str
    """
    return f"mlflow models serve -m models:/{model_name}@{alias} --env-manager local"


def _console(width=120):
    from rich.console import Console

    return Console(file=io.StringIO(), width=width, color_system=None, highlight=False)


def _scale(fidelity):
    if not fidelity or not fidelity.get("level"):
        return ""
    rows = fidelity.get("rows")
    rows = f"{int(rows):,}" if rows not in (None, "") else "?"
    from mnist_mlp.tracking import counted

    return f"{fidelity['level']} fidelity: {counted(fidelity.get('epochs'), 'epoch')}, {rows} training images"


def _now(run_ids, attempt):
    """What this command did for a row's fits: ``trained``, ``reused``, or a mix with those pooled
    from earlier searches (``2 trained, 1 reused, 3 earlier``)."""
    trained = sum(r in attempt["trained_run_ids"] for r in run_ids)
    reused = sum(r in attempt["reused_run_ids"] for r in run_ids)
    parts = {"trained": trained, "reused": reused, "earlier": len(run_ids) - trained - reused}
    if max(parts.values()) == len(run_ids):
        return next(k for k, v in parts.items() if v)
    return ", ".join(f"{v} {k}" for k, v in parts.items() if v)


def _attempt_lines(attempt, run_id):
    """How many fits this command trained and reused, and whether the search's run is the earlier one, resumed."""
    from mnist_mlp.tracking import counted

    trained, reused = len(attempt["trained_run_ids"]), len(attempt["reused_run_ids"])
    lines = [f"Trained {counted(trained, 'fit')} now" + (
        f"; reused {reused} of {trained + reused}: finished runs of the same fits, their accuracy and fit time "
        "(--refit: anew)." if reused else ".")]
    if attempt.get("resumed"):
        lines.append(f"Parent run {run_id}, resumed: the same run as before, not a new one.")
    elif run_id:
        lines.append(f"Parent run {run_id}.")
    return lines


def format_section(section, *, wall_time_s=None, attempt=None, width=120):
    """A study section's table: setting, seeds, our accuracy, the study's, the difference, fit time,
    and with ``attempt`` (:func:`mnist_mlp.study.runner.attempt_summary`) what this command did for
    each row: trained or reused."""
    from rich.table import Table

    title = f"{section['name']} {section['title']}"
    if scale := _scale(section.get("fidelity")):
        title += f" ({scale})"
    by = section.get("published_by", "study")  # a section beyond the study: its paper
    table = Table()
    for name, justify in (("setting", "left"), ("seeds", "right"), ("accuracy % (ours)", "right"),
                          (f"accuracy % ({by})", "right"), ("Δ pts", "right"), ("fit time s", "right")):
        table.add_column(name, justify=justify)
    if attempt is not None:
        table.add_column("this run", justify="left")
    for row in section.get("rows", []):
        ours = format_number(row["accuracy"])
        if row["n_seeds"] > 1 and row.get("accuracy_sd") is not None:
            ours += f" ± {row['accuracy_sd']:.2f}"
        cells = [row["label"], str(row["n_seeds"]), ours, format_number(row["published"].get("accuracy")),
                 format_number(row["delta"], "+.2f"), format_number(row["fit_time_s"], ".1f")]
        if attempt is not None:
            cells.append(_now(row.get("run_ids", []), attempt))
        table.add_row(*cells)
    console = _console(width)
    console.print(title)  # above the table, not its title: rich would wrap it to the table's width
    console.print(table)
    if section.get("fidelity", {}).get("level") == "quick":
        console.print(f"Quick run: not comparable with the {by}'s figures, which trained at full fidelity.")
    if attempt is not None:
        for line in _attempt_lines(attempt, section.get("run_id")):
            console.print(line)
    if wall_time_s is not None:
        console.print(f"Wall time {wall_time_s:.1f} s." if attempt is not None
                      else f"Wall time {wall_time_s:.1f} s; parent run {section.get('run_id')}.")
    return console.file.getvalue()


def format_tuning(result, section, *, width=120):
    """Section 3: each search's pick, then the final networks beside the study's figure."""
    from rich.table import Table

    from mnist_mlp.tracking import format_value, short_key

    console = _console(width)
    scale = _scale(section.get("fidelity"))
    n = len(result["searches"])
    console.print(f"{section.get('name', '3')} {section.get('title', 'tuning')}: {n} search{'' if n == 1 else 'es'}"
                  f"{f' ({scale})' if scale else ''}")
    searches = Table()
    for name, justify in (("objective", "left"), ("best validation score", "right"), ("epochs trained", "right"),
                          ("fits trained / reused", "right"), ("wall time s", "right"), ("best parameters", "left")):
        searches.add_column(name, justify=justify)
    for scoring, search in result["searches"].items():
        best = ", ".join(f"{short_key(k)}={format_value(tuple(v) if isinstance(v, list) else v)}"
                         for k, v in search["best_params"].items())
        attempt = search.get("attempt")
        done = "–" if attempt is None else \
            f"{len(attempt['trained_run_ids'])} / {len(attempt['reused_run_ids'])}"
        searches.add_row(scoring, f"{search['best_score']:.4f}", f"{search['epochs_trained']:,}", done,
                         f"{search['wall_time_s']:.1f}", best)
    console.print(searches)
    resumed = [s["run_id"] for s in result["searches"].values() if (s.get("attempt") or {}).get("resumed")]
    if resumed:
        console.print(f"Resumed the earlier search {'runs' if len(resumed) > 1 else 'run'} {', '.join(resumed)}: "
                      "reused fits count in 'reused', their epochs are not trained again.")
    published = (section.get("published") or [{}])[0]
    console.print("Final network, trained afresh with the accuracy search's pick")
    finals = Table()
    for name, justify in (("protocol", "left"), ("accuracy % (ours)", "right"), ("accuracy % (study)", "right"),
                          ("Δ pts", "right"), ("macro F1 (ours)", "right"), ("macro F1 (study)", "right")):
        finals.add_column(name, justify=justify)
    for final in result["finals"]:
        ours = 100 * final["test_accuracy"]
        study = published.get("accuracy")
        finals.add_row(final["protocol"], f"{ours:.2f}", format_number(study), format_number(None if study is None else ours - study,
                                                                           "+.2f"),
                       f"{final['test_f1_macro']:.4f}", format_number(published.get("f1_macro"), ".4f"))
    console.print(finals)
    registered = result["final"].get("registered")
    if registered:
        state = "now the champion" if registered["champion"] else "not the champion (a better one is)"
        console.print(f"Registered {registered['name']} version {registered['version']}, {state}; serve it with")
        console.print(f"  {serve_command(registered['name'])}")
    if section.get("fidelity", {}).get("level") == "quick":
        console.print("Quick run: not comparable with the study's figures, which trained at full fidelity.")
    console.print(f"Wall time {result['wall_time_s']:.1f} s.")
    return console.file.getvalue()
