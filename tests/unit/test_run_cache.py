"""The run cache's key changes with every input training reads, and with nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from core.config import Fold, TrainingConfig
from core.run_cache import TRAINER_VERSION, TrainerIdentity, cache_key, library_versions, trainer_identity

FOLD = Fold(
    name="wf_2019",
    train_start="20150101",
    train_end="20171231",
    val_start="20180101",
    val_end="20181231",
    test_start="20190101",
    test_end="20191231",
)
SHA = "a" * 64


def key(**changes: Any) -> str:
    inputs: dict[str, Any] = {
        "dataset_sha256": SHA,
        "fold": FOLD,
        "features": ["log_return", "volume"],
        "training": TrainingConfig(),
        "seed": 1,
        "trainer": trainer_identity(None, "cpu"),
    }
    return cache_key(**(inputs | changes))


def test_the_same_inputs_give_the_same_key_under_other_names() -> None:
    assert key() == key()
    assert key(fold=FOLD.model_copy(update={"name": "renamed"})) == key()
    assert key(trainer=trainer_identity("32-true", "cpu")) == key()  # the default precision spelled out
    assert len(key()) == 64


@pytest.mark.parametrize(
    "changes",
    [
        {"dataset_sha256": "b" * 64},
        {"fold": FOLD.model_copy(update={"val_end": "20181230"})},
        {"features": ["log_return"]},
        {"training": TrainingConfig(hidden_size=16)},
        {"training": TrainingConfig(learning_rate=0.001)},
        {"seed": 2},
        {"trainer": trainer_identity("bf16-mixed", "cpu")},
        {"trainer": trainer_identity(None, "cuda")},
        {"trainer": TrainerIdentity("32-true", "cpu", TRAINER_VERSION + 1, library_versions())},
        {"trainer": TrainerIdentity("32-true", "cpu", TRAINER_VERSION, (("torch", "0.0"),))},
    ],
    ids=[
        "dataset",
        "fold",
        "features",
        "hidden_size",
        "learning_rate",
        "seed",
        "precision",
        "device",
        "trainer_version",
        "libraries",
    ],
)
def test_any_input_training_reads_changes_the_key(changes: dict[str, Any]) -> None:
    assert key(**changes) != key()


def test_the_identity_names_the_installed_training_libraries() -> None:
    names = dict(library_versions())
    assert set(names) == {"pytorch-forecasting", "lightning", "torch"}
    assert names["pytorch-forecasting"] == "1.8.0" and names["torch"].startswith("2.13.0")
