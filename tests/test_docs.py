"""The docs keep up with the code: every configuration key is documented."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from sophia_lib.config import SophiaConfig

ROOT = Path(__file__).resolve().parents[1]


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and name != "password":
            keys += _keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def test_every_config_key_is_in_docs_configuration() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = [key for key in _keys(SophiaConfig) if f"`{key}`" not in doc]
    assert not missing, f"document these keys in docs/configuration.md: {missing}"


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme


def test_docs_connectors_is_generated_from_the_declarations() -> None:
    from sophia_lib.connectors.catalog import render_markdown

    assert (ROOT / "docs" / "connectors.md").read_text() == render_markdown(), (
        "docs/connectors.md is stale: run `python -m sophia_lib.connectors.catalog > docs/connectors.md`")
