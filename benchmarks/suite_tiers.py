"""Where a test run's time went, by tier and by module, from its ``--durations=0`` report.

Reads the report a run wrote (``pytest --durations=0 > log``), asks pytest which tests carry
the ``slow`` marker in this checkout (``--collect-only -m slow``), and sums setup, call and
teardown per tier and per module. A run of an older checkout (one without the marker) is thus
split the way this checkout's tiers split it.

    python benchmarks/suite_tiers.py durations.log                 # a table
    python benchmarks/suite_tiers.py durations.log --json out.json
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^\s*([\d.]+)s (setup|call|teardown)\s+(\S.*?)\s*$")


def slow_tests():
    """Node ids of the tests this checkout marks slow."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          "-m", "slow"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {line.strip() for line in out.splitlines() if "::" in line}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    text = args.log.read_text(errors="replace")
    slow = slow_tests()
    tiers, modules = collections.Counter(), collections.Counter()
    counted = set()
    for line in text.splitlines():
        found = LINE.match(line)
        if not found:
            continue
        seconds, _, node = float(found.group(1)), found.group(2), found.group(3)
        tier = "slow" if node in slow else "fast"
        tiers[tier] += seconds
        modules[(node.split("::")[0], tier)] += seconds
        counted.add(node)
    summary = re.findall(r"^=* ?(.*\d+ passed.*) in ([\d.]+)s", text, re.M)
    wall = re.findall(r"rc=(\d+) wall=(\d+)", text)
    result = {"log": str(args.log), "summary": summary[-1][0] if summary else None,
              "pytest_seconds": float(summary[-1][1]) if summary else None,
              "wall_seconds": int(wall[-1][1]) if wall else None,
              "tests_timed": len(counted), "slow_tests_marked": len(slow),
              "tiers_seconds": {tier: round(seconds, 1) for tier, seconds in tiers.items()},
              "modules_seconds": [{"module": module, "tier": tier, "seconds": round(seconds, 1)}
                                  for (module, tier), seconds in modules.most_common()]}
    print(f"{result['summary']}: pytest {result['pytest_seconds']} s, wall {result['wall_seconds']} s")
    print("tier  seconds (setup + call + teardown, summed)")
    for tier, seconds in sorted(result["tiers_seconds"].items()):
        print(f"{tier:5} {seconds:8.1f}")
    print("\nmodule                                              tier   seconds")
    for row in result["modules_seconds"]:
        print(f"{row['module']:52} {row['tier']:5} {row['seconds']:8.1f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
