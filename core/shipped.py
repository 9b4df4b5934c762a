"""The configs shipped with tftsweep (package data, found with importlib.resources).

`sweep` is the default sweep (`core/configs/model_analysis.default.json`), used by
`tftsweep sweep` and `plan` when `--config-json` is left out; `hpo` is the default study
(`core/configs/optuna/default_tft_optuna_sweep.json`), used by `tftsweep hpo`; `example` is
the demo's sweep on the MSFT example dataset.
"""

from __future__ import annotations

from importlib.resources import files

SHIPPED = {
    "sweep": "model_analysis.default.json",
    "hpo": "optuna/default_tft_optuna_sweep.json",
    "example": "sweeps/example_msft.json",
}


def shipped_config(name: str) -> tuple[str, str]:
    """(where it comes from, its JSON text) of the shipped config `name` (a key of `SHIPPED`)."""
    relative = SHIPPED[name]
    return f"{relative} (shipped with tftsweep)", (files("core") / "configs" / relative).read_text(encoding="utf-8")
