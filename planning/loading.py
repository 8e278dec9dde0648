"""Load the frozen encoder and the world model from folders given on the command line."""

from __future__ import annotations

from pathlib import Path

import torch

from flowjepa.errors import InvalidInputError

ENCODER_CONFIG = "config.json"
REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_ENCODER = REPO_ROOT / "models" / "cartpole" / "encoder"
"""The encoder that ``flowjepa plan`` and ``collect --policy plan`` use by default."""
SHIPPED_WORLD_MODEL = REPO_ROOT / "models" / "cartpole" / "world_model"
"""The world model that ``flowjepa plan`` and ``collect --policy plan`` use by default."""


def resolve_encoder_dir(path: str | Path) -> Path:
    """Return the folder that contains the encoder's ``config.json``: ``path`` itself or its ``model/`` subfolder.

    ``flowjepa pretrain`` writes the final model to ``RUN/model``, so a pretrain
    run folder is accepted as well as the model folder itself.
    """
    path = Path(path)
    if (path / ENCODER_CONFIG).is_file() and (path / "model.safetensors").is_file():
        return path
    if (path / "model" / ENCODER_CONFIG).is_file():
        return path / "model"
    raise InvalidInputError(
        f"no Flow-JEPA encoder found in {path} (expected config.json and model.safetensors there or in {path}/model); "
        "train one with `flowjepa pretrain --out RUN` and pass RUN or RUN/model"
    )


def load_frozen_encoder(path: str | Path, device: torch.device):
    """Load a Flow-JEPA encoder in eval mode with every weight frozen (no gradient reaches it)."""
    from flowjepa.model import FlowJEPA

    encoder = FlowJEPA.from_pretrained(resolve_encoder_dir(path), device=device)
    return encoder.eval().requires_grad_(False)
