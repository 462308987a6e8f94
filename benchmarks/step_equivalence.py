"""The per-step equivalence matrix of ``tests/test_training_kernels.py``, with the largest difference per row.

Runs the same comparisons as the tests (one step of the compiled loop against
one step of Keras from identical state; the gradient alone; the update rule
alone on identical gradients) and writes every row's largest relative
difference to ``benchmarks/results/step_equivalence.md`` and ``.json``.

    python benchmarks/step_equivalence.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import test_training_kernels as t  # noqa: E402


def main():
    started = time.perf_counter()
    steps = [dict(zip(("optimizer", "penalty", "activation", "shape"), case), **t.compare_one_step(*case))
             for case in t.CASES]
    gradients = [dict(zip(("activation", "penalty", "shape"), case), max=max(t.compare_gradient(*case).values()))
                 for case in t.GRADIENT_CASES]
    updates = []
    for case in t.UPDATE_CASES:
        errors = t.compare_update(*case)
        updates.append(dict(zip(("optimizer", "penalty"), case),
                            weights=max(v for k, v in errors.items() if not k.startswith("slot")),
                            slots=max(v for k, v in errors.items() if k.startswith("slot"))))
    out = ROOT / "benchmarks" / "results"
    result = {"tolerances": {"part": t.TOL_PART, "step": t.TOL_STEP}, "whole_step": steps,
              "gradient": gradients, "update_rule": updates, "seconds": time.perf_counter() - started}
    (out / "step_equivalence.json").write_text(json.dumps(result, indent=1))
    lines = [
        "# One step of the compiled loop against Keras",
        "",
        "Written by `python benchmarks/step_equivalence.py` (the comparisons of `tests/test_training_kernels.py`).",
        "Each figure is the largest |ours - Keras| over the row, less one float32 rounding of the stored",
        "value, divided by the largest magnitude of the step's change (weights) or of the value itself",
        "(slots, loss, gradient).",
        f"Tolerances: gradient and update rule {t.TOL_PART:g}; whole step {t.TOL_STEP}.",
        "",
        "## Whole step (`train_on_batch` against `mnist_mlp.training.loop.fit`, 3 Keras steps in)",
        "",
        "| optimizer | penalty | activation | shape, batch | loss | kernels | intercepts | slots |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {r['optimizer']} | {r['penalty']} | {r['activation']} | {r['shape']} | {r['loss']:.1e} | "
              f"{r['kernels']:.1e} | {r['intercepts']:.1e} | {r['slots']:.1e} |" for r in steps]
    lines += ["", "## Gradient alone (the loop's gradient buffer against `tf.GradientTape`)", "",
              "| activation | penalty | shape, batch | largest |", "| --- | --- | --- | ---: |"]
    lines += [f"| {r['activation']} | {r['penalty']} | {r['shape']} | {r['max']:.1e} |" for r in gradients]
    lines += ["", "## Update rule alone (`training.kernels._update` against `optimizer.apply`, same gradients)", "",
              "| optimizer | penalty | weights | slots |", "| --- | --- | ---: | ---: |"]
    lines += [f"| {r['optimizer']} | {r['penalty']} | {r['weights']:.1e} | {r['slots']:.1e} |" for r in updates]
    lines += ["", f"{len(steps) + len(gradients) + len(updates)} comparisons in {result['seconds']:.0f} s.", ""]
    (out / "step_equivalence.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
