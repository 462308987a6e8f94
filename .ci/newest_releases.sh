#!/usr/bin/env bash
# A second environment with the newest releases that pyproject's ranges allow, without the
# pins of constraints.txt (what `pip install mnist-mlp` gives a user today), and a fast
# subset of the suite that exercises the internals of the libraries this package touches.
# It prints which releases moved past the pins; a failure names them: the first suspects.
set -uo pipefail
cd "$(dirname "$0")/.."
LIBS=(scikit-learn keras tensorflow mlflow scikeras jax jaxlib numpy numba scipy)
python3 -m venv .venv-newest || exit 1
.venv-newest/bin/pip install -q -e '.[test]' || exit 1
.venv-newest/bin/pip install -q --upgrade --upgrade-strategy only-if-needed -e '.[test]' "${LIBS[@]}" || exit 1
versions() { "$1" -c "
from importlib.metadata import version
print(' '.join(f'{d}=={version(d)}' for d in '${LIBS[*]}'.split()))"; }
main_versions=$(versions .venv/bin/python)
newest_versions=$(versions .venv-newest/bin/python)
echo "ci: pinned (main):       $main_versions"
echo "ci: newest releases:    $newest_versions"
moved=$(comm -13 <(tr ' ' '\n' <<<"$main_versions" | sort) <(tr ' ' '\n' <<<"$newest_versions" | sort) | tr '\n' ' ')
echo "ci: moved past the pins: ${moved:-none}"
.venv-newest/bin/python -m pytest -q -p no:cacheprovider \
    tests/test_training_kernels.py tests/test_training_xla.py tests/test_architecture.py \
    "tests/test_training_loop.py::test_falls_back_to_keras_fit_by_itself" \
    "tests/test_training_loop.py::test_a_keras_that_moved_its_optimizer_state_gets_a_fallback_not_a_crash" \
    "tests/test_model_selection_search.py::test_the_sklearn_hook_still_applies_and_fails_loudly_when_it_does_not" \
    "tests/test_model_selection_search.py::test_tracking_settings_are_parameters_a_clone_keeps" \
    "tests/test_estimator.py::test_plain_scikeras_is_not_a_classifier_but_ours_is" \
    "tests/test_estimator.py::test_clone_pickle_and_joblib_round_trips" \
    "tests/test_tracking_runs.py::test_a_pipeline_fit_is_one_run_and_its_model_serves_images"
status=$?
if [ $status -ne 0 ]; then
    changed=$(comm -13 <(tr ' ' '\n' <<<"$main_versions" | sort) <(tr ' ' '\n' <<<"$newest_versions" | sort) | tr '\n' ' ')
    echo "ci: the newest releases break the subset above; newer than the main environment: ${changed:-none (the failure is not a new release)}"
fi
exit $status
