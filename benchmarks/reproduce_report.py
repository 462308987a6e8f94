"""Does a rerun reproduce the committed study report? Every seed's figures, compared exactly.

Reads the sections a store holds (``mnist-mlp study ...`` into it) with the
report's own reader, and compares each row's per-seed test accuracies, test
loss and Keras loss with ``benchmarks/results/study_report/report.json``, to
the bit. Prints a line per row and the environment note; exits 1 on any
difference. Writes the comparison as JSON with ``--out``.

    MLFLOW_TRACKING_URI=sqlite:////tmp/fresh.db mnist-mlp study 2.4.1,2.1 --data-dir ../shared/data/mnist
    python benchmarks/reproduce_report.py --tracking-uri sqlite:////tmp/fresh.db --sections 2.4.1,2.1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COMMITTED = Path(__file__).resolve().parent / "results" / "study_report" / "report.json"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--sections", required=True, help="comma-separated, e.g. 2.4.1,2.1")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from mlflow import MlflowClient

    from mnist_mlp.study import collect_section
    from mnist_mlp.study.environment import of_runs

    committed = {s["name"]: s for s in json.loads(COMMITTED.read_text())["sections"]}
    rows, same, run_ids = [], True, []
    for name in args.sections.split(","):
        theirs = {r["label"]: r for r in committed[name]["rows"]}
        for ours in collect_section(name, args.tracking_uri)["rows"]:
            there = theirs[ours["label"]]
            fields = {key: (ours[key], there[key]) for key in ("seeds", "accuracies", "loss", "train_loss")}
            equal = all(a == b for a, b in fields.values())
            same &= equal
            run_ids += ours["run_ids"]
            rows.append({"section": name, "row": ours["label"], "identical": equal, "ours": ours["accuracies"],
                         "committed": there["accuracies"]})
            print(f"{name} {ours['label']}: {'identical' if equal else 'DIFFERS'}  "
                  f"ours {ours['accuracies']}  committed {there['accuracies']}")
    versions = of_runs(MlflowClient(args.tracking_uri), run_ids)  # the rerun's own, from its runs
    print("rerun made with:", ", ".join(f"{k} {'/'.join(v)}" for k, v in versions.items()))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "identical": same, "environment": versions}, indent=1) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
