"""The quick study example the documentation shows: ``mnist-mlp study 2.4.1 --epochs 3 --n-train 3000``.

Runs the command as a user would, in a fresh folder (so a fresh ``./mlflow.db``
and no fit reused from an earlier run), on the embedded MNIST subset (the
default of a fresh checkout without ``MNIST_MLP_DATA_DIR``: the CLI never downloads), and
writes what it printed and the table's figures, read back from that store, to
``benchmarks/results/quick_study_2.4.1.json``. ``docs/study/index.md`` quotes
them; ``tests/test_claims.py`` checks every ``mean ± sd`` the docs quote
against the results files.

    python benchmarks/quick_study_example.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
COMMAND = ["study", "2.4.1", "--epochs", "3", "--n-train", "3000"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RESULTS / "quick_study_2.4.1.json")
    args = parser.parse_args(argv)
    # A fresh checkout's environment: MLflow's default store in the working folder, the embedded data.
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "MNIST_MLP_TRACKING", "MNIST_MLP_DATA_DIR")}
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run([sys.executable, "-m", "mnist_mlp", *COMMAND], cwd=folder, env=env,
                              capture_output=True, text=True, check=True)
        from mnist_mlp.study import collect_section

        section = collect_section("2.4.1", tracking_uri=f"sqlite:///{Path(folder) / 'mlflow.db'}")
    rows = [{"setting": row["label"], "seeds": row["n_seeds"], "accuracies": row["accuracies"],
             "accuracy": round(row["accuracy"], 2), "accuracy_sd": round(row["accuracy_sd"], 2)}
            for row in section["rows"]]
    result = {"what": "the documentation's quick study example, in a fresh folder on the embedded subset",
              "command": "mnist-mlp " + " ".join(COMMAND), "fidelity": section.get("fidelity"),
              "rows": rows, "stdout": done.stdout}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(done.stdout, end="")


if __name__ == "__main__":
    main()
