#!/usr/bin/env bash
# Regenerate constraints.txt: the tested versions of everything the package and its
# test, docs, dask, bench and ui extras install, on Linux x86-64 with Python 3.11, resolved
# by uv from pyproject.toml's (loose) ranges. One command:
#
#     scripts/update_pins.sh            # the newest releases the ranges allow
#     scripts/update_pins.sh numpy      # move only these packages, keep the rest
#
# Then reinstall (pip install -e '.[test]' -c constraints.txt), run the suite, rerun the
# study (benchmarks/full_study.py) and commit constraints.txt with the regenerated report:
# the report names the versions its figures came from.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=$(command -v uv || true)
if [ -z "$uv" ]; then
    tools=$(mktemp -d)
    python3 -m venv "$tools" && "$tools/bin/pip" install -q uv
    uv="$tools/bin/uv"
fi
if [ $# -eq 0 ]; then
    upgrade=(--upgrade)
else
    upgrade=(); for package in "$@"; do upgrade+=(--upgrade-package "$package"); done
fi
"$uv" pip compile pyproject.toml --extra test --extra docs --extra dask --extra bench --extra ui \
    --python-version 3.11 --python-platform x86_64-unknown-linux-gnu "${upgrade[@]}" \
    --custom-compile-command "scripts/update_pins.sh" --output-file constraints.txt
