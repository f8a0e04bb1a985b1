"""Every list setting is one type, ``connectors.CommaList`` (issue 16: configuration in one
place): written ``a, b, c`` in the environment, items stripped, empty ones dropped — the same
for the pipeline's settings, the registry's and each connector's."""

from __future__ import annotations

import pytest

from connectors import CommaList, ConnectorSettings
from connectors._settings import RegistrySettings
from flows.settings import Settings

LIST_SETTINGS = [(Settings, "connectors"), (Settings, "automatic_outcomes"),
                 (RegistrySettings, "connectors"), (ConnectorSettings, "extra_hosts")]


@pytest.mark.parametrize(("model", "name"), LIST_SETTINGS,
                         ids=[f"{m.__name__}.{n}" for m, n in LIST_SETTINGS])
def test_each_list_setting_is_the_one_comma_list_type(model: type, name: str) -> None:
    field = model.model_fields[name]
    assert field.annotation == CommaList.__origin__  # list[str]
    assert field.metadata == list(CommaList.__metadata__), field.metadata


def test_the_environment_is_read_the_same_way_everywhere(
        monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("CME_CONNECTORS", " housing, ,other_la,")
    monkeypatch.setenv("CME_AUTOMATIC_OUTCOMES", " left_uk ,,")
    monkeypatch.setenv("CME_HOUSING_EXTRA_HOSTS", "A.Example, ,b.example,")
    s = Settings(database_url="sqlite:///:memory:")
    assert s.connectors == ["housing", "other_la"]
    assert s.automatic_outcomes == ["left_uk"]
    assert RegistrySettings().connectors == ["housing", "other_la"]
    assert ConnectorSettings.for_connector("housing").extra_hosts == ["a.example", "b.example"]
