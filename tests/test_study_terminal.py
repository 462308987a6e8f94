"""What ``study`` and ``tune`` print when a section ends."""

from __future__ import annotations

import re
from pathlib import Path

from mnist_mlp.study.terminal import format_tuning

ROOT = Path(__file__).resolve().parents[1]


def _docs_champion_command():
    text = (ROOT / "docs" / "serving.md").read_text()
    start = text.index("## The registered champion")
    return re.search(r"```bash\n(.*?)\n```", text[start:], re.S).group(1).strip()


def test_tune_serve_hint_is_the_docs_command():
    """The hint's command is docs/serving.md's, alone on its line, so it pastes as it is."""
    result = {"searches": {}, "finals": [], "wall_time_s": 1.0,
              "final": {"registered": {"name": "mnist-mlp", "version": 3, "champion": True}}}
    printed = format_tuning(result, {}, width=80).splitlines()
    command = _docs_champion_command()
    assert command.startswith("mlflow models serve") and "--env-manager local" in command
    assert command in [line.strip() for line in printed], printed
