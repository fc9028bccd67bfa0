"""`.env.example` documents every setting of every service (the README points readers there)."""

from __future__ import annotations

import importlib
import re

import pytest
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from services.devstack.settings import PROJECT_ROOT

SETTINGS = {
    "services.core.settings": "BaseServiceSettings",
    "services.devstack.settings": "StackSettings",
    "services.ingress.settings": "IngressSettings",
    "services.retriever.settings": "RetrieverSettings",
    "services.generator.settings": "GeneratorSettings",
    "services.status.settings": "StatusSettings",
    "ui.settings": "UiSettings",
    "services.cli.settings": "CliSettings",
}


def _env_names(cls: type[BaseSettings]) -> list[tuple[str, ...]]:
    """The environment names of each field (its aliases, else prefix + field name)."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names = []
    for field, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.append(tuple(str(choice) for choice in alias.choices))
        else:
            names.append((str(alias) if alias else f"{prefix}{field}".upper(),))
    return names


@pytest.mark.parametrize("module", SETTINGS)
def test_env_example_documents_every_setting(module, monkeypatch):
    monkeypatch.syspath_prepend(str(PROJECT_ROOT))  # `ui` is a folder of the checkout, not an installed package
    cls = getattr(importlib.import_module(module), SETTINGS[module])
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (PROJECT_ROOT / ".env.example").read_text(), re.M))

    missing = [" or ".join(names) for names in _env_names(cls) if not documented & set(names)]

    assert not missing, f".env.example lacks {', '.join(missing)} of {SETTINGS[module]}"
