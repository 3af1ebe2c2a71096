"""Load model presets (YAML), YAML files, or Hugging Face config.json files."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from hw.loader import ConfigError, format_validation_error, strip_sources

from .schema import ModelConfig

PRESET_DIR = Path(__file__).parent / "presets"


def presets() -> list[str]:
    """Names of the shipped model presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def build_model(data: dict) -> ModelConfig:
    try:
        return ModelConfig.model_validate(strip_sources(data))
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "model")) from None


def load(name_or_path: str | Path) -> ModelConfig:
    """A model by preset name (see presets()), a YAML file, or a Hugging Face config.json path."""
    if isinstance(name_or_path, ModelConfig):
        return name_or_path
    path = Path(name_or_path)
    if path.suffix == ".json" or path.is_dir():
        from .hf import load_hf_config

        return load_hf_config(path)
    if path.suffix in (".yaml", ".yml"):
        if not path.exists():
            raise ConfigError(f"model file not found: {name_or_path}")
        return build_model(yaml.safe_load(path.read_text()))
    if str(name_or_path) in presets():
        return build_model(yaml.safe_load((PRESET_DIR / f"{name_or_path}.yaml").read_text()))
    raise ConfigError(f"unknown model preset {str(name_or_path)!r}; known: {', '.join(presets())}")
