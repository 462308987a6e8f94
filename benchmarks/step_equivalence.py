"""The per-step equivalence matrix of ``tests/test_training_kernels.py``, with the largest difference per row.

Runs the same comparisons as the tests (one step of the compiled loop against
one step of Keras from identical state; the gradient alone; the update rule
alone on identical gradients) and writes every row's largest relative
difference to ``benchmarks/results/step_equivalence.md`` and ``.json``; with
``--loop xla``, the same for the XLA loop (``tests/test_training_xla.py``, on
JAX's default backend) into ``step_equivalence_xla.md`` and ``.json``.

    python benchmarks/step_equivalence.py
    python benchmarks/step_equivalence.py --loop xla
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import test_training_kernels as t  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["compiled", "xla"], default="compiled")
    loop = parser.parse_args(argv).loop
    gradient, update, engine = {}, {}, "compiled"
    if loop == "xla":
        import test_training_xla as x

        gradient, update, engine = {"gradient": x.xla_gradient}, {"update": x.xla_update}, "xla"
    started = time.perf_counter()
    steps = [dict(zip(("optimizer", "penalty", "activation", "shape"), case),
                  **t.compare_one_step(*case, engine=engine)) for case in t.CASES]
    gradients = [dict(zip(("activation", "penalty", "shape"), case),
                      max=max(t.compare_gradient(*case, **gradient).values())) for case in t.GRADIENT_CASES]
    updates = []
    for case in t.UPDATE_CASES:
        errors = t.compare_update(*case, **update)
        updates.append(dict(zip(("optimizer", "penalty"), case),
                            weights=max(v for k, v in errors.items() if not k.startswith("slot")),
                            slots=max(v for k, v in errors.items() if k.startswith("slot"))))
    out = ROOT / "benchmarks" / "results"
    result = {"loop": loop, "tolerances": {"part": t.TOL_PART, "step": t.TOL_STEP}, "whole_step": steps,
              "gradient": gradients, "update_rule": updates, "seconds": time.perf_counter() - started}
    stem = "step_equivalence" + ("_xla" if loop == "xla" else "")
    if loop == "xla":
        import jax

        result["jax"] = {"version": jax.__version__, "device": jax.devices()[0].device_kind}
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1))
    tests = "tests/test_training_xla.py" if loop == "xla" else "tests/test_training_kernels.py"
    lines = [
        f"# One step of the {loop} loop against Keras",
        "",
        f"Written by `python benchmarks/step_equivalence.py{' --loop xla' if loop == 'xla' else ''}` "
        f"(the comparisons of `{tests}`"
        + (f"; JAX {result['jax']['version']} on {result['jax']['device']}" if loop == "xla" else "") + ").",
        "Each figure is the largest |ours - Keras| over the row, less one float32 rounding of the stored",
        "value, divided by the largest magnitude of the step's change (weights) or of the value itself",
        "(slots, loss, gradient).",
        f"Tolerances: gradient and update rule {t.TOL_PART:g}; whole step {t.TOL_STEP}.",
        "",
        f"## Whole step (`train_on_batch` against `mnist_mlp.training.loop.fit`, engine `{engine}`, "
        "3 Keras steps in)",
        "",
        "| optimizer | penalty | activation | shape, batch | loss | kernels | intercepts | slots |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {r['optimizer']} | {r['penalty']} | {r['activation']} | {r['shape']} | {r['loss']:.1e} | "
              f"{r['kernels']:.1e} | {r['intercepts']:.1e} | {r['slots']:.1e} |" for r in steps]
    lines += ["", "## Gradient alone (the loop's gradient buffer against `tf.GradientTape`)", "",
              "| activation | penalty | shape, batch | largest |", "| --- | --- | --- | ---: |"]
    lines += [f"| {r['activation']} | {r['penalty']} | {r['shape']} | {r['max']:.1e} |" for r in gradients]
    rule = "training.xla._apply" if loop == "xla" else "training.kernels._update"
    lines += ["", f"## Update rule alone (`{rule}` against `optimizer.apply`, same gradients)", "",
              "| optimizer | penalty | weights | slots |", "| --- | --- | ---: | ---: |"]
    lines += [f"| {r['optimizer']} | {r['penalty']} | {r['weights']:.1e} | {r['slots']:.1e} |" for r in updates]
    lines += ["", f"{len(steps) + len(gradients) + len(updates)} comparisons in {result['seconds']:.0f} s.", ""]
    (out / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
