"""Load hardware presets (YAML) with sourced numbers, and apply keyword overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .schema import Hardware

PRESET_DIR = Path(__file__).parent / "presets"

# override keyword -> path of the field inside the hardware description
OVERRIDES: dict[str, tuple[str, ...]] = {
    "rows": ("topology", "rows"),
    "cols": ("topology", "cols"),
    "nodes": ("topology", "rows"),
    "sram_bytes": ("die", "sram_bytes"),
    "hbm_bytes": ("die", "hbm_bytes"),
    "matmul_efficiency": ("die", "matmul_efficiency"),
    "link_bandwidth": ("topology", "link", "bandwidth"),
    "defects": ("defects",),
    "fused_collectives": ("features", "fused_collectives"),
}


class ConfigError(ValueError):
    """A user-facing configuration error: one line naming the field and what is allowed."""


def strip_sources(node: Any) -> Any:
    """Replace every `{value: x, source|assumption: ...}` by x, recursively; drop `source` notes."""
    if isinstance(node, dict):
        if "value" in node and set(node) <= {"value", "source", "assumption", "unit"}:
            return strip_sources(node["value"])
        return {k: strip_sources(v) for k, v in node.items() if k not in ("source", "assumption", "sources")}
    if isinstance(node, list):
        return [strip_sources(v) for v in node]
    return node


def presets() -> list[str]:
    """Names of the shipped hardware presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def raw_preset(name_or_path: str | Path) -> dict:
    """The preset YAML as written (with its source notes)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return yaml.safe_load(path.read_text())
    if str(name_or_path) in presets():
        return yaml.safe_load((PRESET_DIR / f"{name_or_path}.yaml").read_text())
    if path.suffix in (".yaml", ".yml"):
        raise ConfigError(f"hardware file not found: {name_or_path}")
    raise ConfigError(f"unknown hardware preset {str(name_or_path)!r}; known: {', '.join(presets())}")


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def format_validation_error(err: ValidationError, what: str) -> str:
    """One line: `invalid <what>: <field>: <message>; ...` (model-level errors already name their field)."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ").replace("\n", " ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return f"invalid {what}: " + "; ".join(parts)


def build_hardware(data: dict, **overrides: Any) -> Hardware:
    """Validate a hardware description (sources already stripped) with overrides applied."""
    tree = strip_sources(data)
    for key, value in overrides.items():
        if key not in OVERRIDES:
            raise ConfigError(f"unknown hardware override {key!r}; allowed: {', '.join(sorted(OVERRIDES))}")
        if key == "defects":
            value = [tuple(d) for d in value]
        _set(tree, OVERRIDES[key], value)
        if key in ("cols",) and tree.get("topology", {}).get("kind") == "switched":
            tree["topology"]["levels"][0]["size"] = value
    if ("rows" in overrides or "cols" in overrides or "nodes" in overrides) and tree.get("dram_ports"):
        # ports stay on their edge of a resized grid: clamp them inside it
        rows, cols = tree["topology"]["rows"], tree["topology"]["cols"]
        ok = all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in (rows, cols))
        for p in tree["dram_ports"] if ok else ():  # a bad size is reported by validation below
            p["row"], p["col"] = min(p["row"], rows - 1), min(p["col"], cols - 1)
    try:
        return Hardware.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, "hardware")) from None


def load(name_or_path: str | Path, **overrides: Any) -> Hardware:
    """Load a preset by name (see presets()) or a YAML file, with keyword overrides of top-level fields.

    Overrides: rows, cols, nodes (rows of a switched cluster), sram_bytes, hbm_bytes,
    matmul_efficiency, link_bandwidth, defects=[(row, col), ...], fused_collectives.
    """
    if isinstance(name_or_path, Hardware):
        return name_or_path
    return build_hardware(raw_preset(name_or_path), **overrides)
