"""The documentation keeps up with the schema."""

from __future__ import annotations

from pathlib import Path

from core.config import TrainingConfig


def test_every_training_key_is_documented() -> None:
    text = Path("docs/config.md").read_text()
    missing = [k for k in TrainingConfig.model_fields if f"| `{k}` |" not in text]
    assert missing == []
