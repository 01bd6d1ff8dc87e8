"""The README stays true: its two commands, the CI entry, every setting, every service id."""

from __future__ import annotations

import re
from pathlib import Path

from app.discovery import SERVICES
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RUN = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/besponsa-cds serve"
TEST = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/python -m pytest"


def test_readme_has_the_run_and_test_commands():
    blocks = re.findall(r"```sh\n(.*?)```", README, re.S)
    assert RUN in [b.strip() for b in blocks]
    assert TEST in [b.strip() for b in blocks]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    last = [line for line in ci.splitlines() if line.strip() and not line.startswith("#")][-1]
    # CI adds only -q to pip (quiet logs); the command is otherwise the README's.
    assert last.replace("pip install -q ", "pip install ") == TEST


def test_every_setting_is_in_the_configuration_table():
    missing = [
        f"BESPONSA_{name.upper()}"
        for name in Settings.model_fields
        if f"| `BESPONSA_{name.upper()}` |" not in README
    ]
    assert not missing, f"README configuration table lacks {missing}: add a row per setting"


def test_every_service_id_is_documented():
    for service_id in SERVICES:
        assert service_id in README
