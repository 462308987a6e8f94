"""Save a fitted pipeline five ways, load each in a fresh process, compare the predictions.

    python benchmarks/interop_persistence.py

pickle, joblib, skops.io (trusting ``mnist_mlp.skops_trusted_types()``),
``mlflow.sklearn.log_model`` with MLflow's default format (skops) and with
cloudpickle. The pipeline (16 hidden units, 3 epochs) is fitted on 2,000
embedded images with tracking off; each file is loaded by a new Python
process, which predicts 500 test images. Writes the table to
benchmarks/results/interop_persistence.json: per way, whether it saved,
loaded, and the largest difference of a predicted probability (max |dP|)
and the number of predicted labels that differ.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

# Run in the fresh process: load the saved model as the way says, predict, save the probabilities.
_LOADER = textwrap.dedent("""
    import sys, numpy as np
    way, path, x_path, out = sys.argv[1:5]
    if way == "pickle":
        import pickle
        model = pickle.load(open(path, "rb"))
    elif way == "joblib":
        import joblib
        model = joblib.load(path)
    elif way == "skops.io":
        import skops.io, mnist_mlp
        model = skops.io.load(path, trusted=mnist_mlp.skops_trusted_types())
    else:
        import mlflow, mlflow.sklearn
        mlflow.set_tracking_uri(sys.argv[5])
        model = mlflow.sklearn.load_model(path)
    np.save(out, model.predict_proba(np.load(x_path)))
""")


def _save(way, pipe, folder, uri):
    """Save ``pipe`` the way named; return what the loader takes (a path or a model URI)."""
    import joblib
    import mlflow
    import mlflow.sklearn
    import pickle
    import skops.io

    import mnist_mlp

    if way == "pickle":
        path = folder / "model.pkl"
        path.write_bytes(pickle.dumps(pipe))
        return str(path)
    if way == "joblib":
        joblib.dump(pipe, folder / "model.joblib")
        return str(folder / "model.joblib")
    if way == "skops.io":
        skops.io.dump(pipe, folder / "model.skops")
        return str(folder / "model.skops")
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run():
        if way == "mlflow.sklearn.log_model (default: skops)":
            info = mlflow.sklearn.log_model(pipe, name="model", skops_trusted_types=mnist_mlp.skops_trusted_types())
        else:
            info = mlflow.sklearn.log_model(pipe, name="model",
                                            serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE)
    return info.model_uri


WAYS = ["pickle", "joblib", "skops.io", "mlflow.sklearn.log_model (default: skops)",
        "mlflow.sklearn.log_model (cloudpickle)"]


def main():
    os.environ["MNIST_MLP_TRACKING"] = "0"
    import numpy as np

    from mnist_mlp import load_embedded_mnist, make_pipeline

    (x, y), (x_test, _) = load_embedded_mnist()
    pipe = make_pipeline(hidden_layer_sizes=(16,), epochs=3, random_state=0).fit(x[:2000], y[:2000])
    expected = pipe.predict_proba(x_test[:500])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder, uri = Path(tmp), f"sqlite:///{tmp}/mlflow.db"
        np.save(folder / "x.npy", x_test[:500])
        env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true"}
        for way in WAYS:
            row = {"way": way}
            try:
                target = _save(way, pipe, folder, uri)
            except Exception as exc:  # noqa: BLE001 - the table records what failed
                rows.append({**row, "saved": False, "error": f"{type(exc).__name__}: {exc}"[:300]})
                continue
            out = folder / "p.npy"
            done = subprocess.run([sys.executable, "-c", _LOADER, way, target, str(folder / "x.npy"), str(out), uri],
                                  env=env, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                rows.append({**row, "saved": True, "loaded": False, "error": done.stderr.strip()[-300:]})
                continue
            loaded = np.load(out)
            rows.append({**row, "saved": True, "loaded": True,
                         "max_abs_dP": float(np.abs(loaded - expected).max()),
                         "labels_differing": int((loaded.argmax(1) != expected.argmax(1)).sum())})
            out.unlink()
    result = {"n_test": 500, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "interop_persistence.json").write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(f"{row['way']:45} saved={row.get('saved')} loaded={row.get('loaded')} "
              f"max|dP|={row.get('max_abs_dP')} {row.get('error', '')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
