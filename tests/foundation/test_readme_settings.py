"""The README's configuration table lists every setting (config.py promises it)."""

from __future__ import annotations

from pathlib import Path

from virtuousai.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_has_a_row_in_the_readme_table() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [f"VAI_{name.upper()}" for name in Settings.model_fields if f"| `VAI_{name.upper()}` |" not in text]
    assert not missing, f"README configuration table lacks {missing}"
