"""A training run's settings as a file (`factory train --config FILE`): the model and the optimiser's knobs, e.g. the
ones the wind tunnel predicts for the target run. The schedule's token boundaries stay in the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from datafactory.factory.config import load_yaml_model


class TrainSettings(BaseModel):
    """Keyword arguments of trainer.train.train that a run config may set; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    model: str | dict[str, Any] = Field("test", description="preset name, config file, or ModelConfig fields")
    batch_size: int = Field(8, gt=0, description="sequences per step")
    lr: float | None = Field(None, gt=0, description="peak learning rate; default: by model size (GPT-3 table)")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="the decay ends at min_lr_ratio x peak")
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, gt=0)

    def train_kwargs(self) -> dict[str, Any]:
        return self.model_dump()


def load_train_settings(path: str | Path) -> TrainSettings:
    """The YAML file's settings; a missing file, bad YAML or a bad value is a one-line ConfigError."""
    return load_yaml_model(path, TrainSettings, "train config")
