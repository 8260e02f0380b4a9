"""The ``security.compliance`` section: the guide's example, defaults, every
bad value named by its path."""

from __future__ import annotations

from typing import Any

import pytest

from swarmgate import ConfigError, load_config
from swarmgate_compliance import ComplianceSettings


def settings(section: dict[str, Any]) -> ComplianceSettings:
    return ComplianceSettings.from_config(load_config({"security": {"compliance": section}}))


def test_the_guides_example() -> None:
    parsed = settings({"gdpr": True, "hipaa": False, "dataResidency": "us-east-1"})
    assert parsed.gdpr is True
    assert parsed.hipaa is False
    assert parsed.regions == ("us-east-1",)
    assert parsed.personal_controls is True


def test_defaults() -> None:
    parsed = ComplianceSettings.from_config(None)
    assert (parsed.gdpr, parsed.hipaa, parsed.regions) == (False, False, None)
    assert parsed.personal_data_tag == "personal"
    assert parsed.allow_providers_without_region is False
    assert parsed.personal_controls is False


def test_regions_are_normalised() -> None:
    assert settings({"dataResidency": [" EU-West-1 ", "eu-west-1", "us"]}).regions == ("eu-west-1", "us")
    assert settings({"hipaa": True}).personal_controls is True


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ({"dataResidency": 5}, "security.compliance.dataResidency"),
        ({"dataResidency": []}, "security.compliance.dataResidency"),
        ({"dataResidency": ""}, "security.compliance.dataResidency"),
        ({"dataResidency": ["eu", ""]}, "security.compliance.dataResidency[1]"),
        ({"dataResidency": ["eu", 3]}, "security.compliance.dataResidency[1]"),
        ({"personalDataTag": " "}, "security.compliance.personalDataTag"),
        ({"gdpr": "yes"}, "security.compliance.gdpr"),
        ({"hipaa": 1}, "security.compliance.hipaa"),
        ({"soc2": True}, "security.compliance.soc2"),
    ],
)
def test_bad_values_are_named(section: dict[str, Any], path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(section)
    assert path in [p for p, _ in caught.value.problems]
