"""The compliance controls' configuration (``security.compliance``).

The guide's keys are ``gdpr``, ``hipaa`` and ``dataResidency``; the rest
extend them.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from swarmgate import SwarmgateConfig, parse_section
from swarmgate.config import InvalidValue

#: The config path of the section.
SECTION: Final = "security.compliance"


def _regions(value: Any) -> tuple[str, ...] | None:
    """``dataResidency`` as lower-case region names; raises InvalidValue."""
    if value is None:
        return None
    if isinstance(value, str):
        items: list[Any] = [value]
        single = True
    elif isinstance(value, list):
        items = value
        single = False
        if not items:
            raise InvalidValue("dataResidency", "must name at least one region (or be left out)")
    else:
        raise InvalidValue(
            "dataResidency", f'must be a region or a list of regions, e.g. "eu-west-1", got {type(value).__name__}'
        )
    out: list[str] = []
    for i, item in enumerate(items):
        key = "dataResidency" if single else f"dataResidency[{i}]"
        if not isinstance(item, str) or not item.strip():
            raise InvalidValue(key, f'must be a region name such as "eu-west-1" or "eu", got {item!r}')
        region = item.strip().lower()
        if region not in out:
            out.append(region)
    return tuple(out)


@attrs.frozen
class ComplianceSettings:
    """``security.compliance``.

    * ``gdpr`` -- personal data redacted in the audit log's stored bodies,
      requests marked personal never cached, a caller's records erasable
      (``compliance forget``; the erasure works whatever this says).
    * ``hipaa`` -- the controls HIPAA asks of a gateway: those of ``gdpr``,
      the audit log on, encryption at rest required (a start-up error
      without it). Not a certification.
    * ``dataResidency`` -- a region or a list of regions; requests go only
      to providers whose ``region`` is one of them (``"eu"`` also allows
      ``"eu-west-1"``: a region matches itself and its ``-`` sub-regions;
      case-insensitive). Unset: no restriction.
    * ``personalDataTag`` -- the request tag marking a request personal
      (default ``"personal"``); ``metadata: {"personal": true}`` marks it too.
    * ``allowProvidersWithoutRegion`` -- a provider with no ``region`` is
      outside the allowed regions unless this is true (default false).
    """

    gdpr: bool = False
    hipaa: bool = False
    data_residency: Any = None
    personal_data_tag: str = "personal"
    allow_providers_without_region: bool = False

    def __attrs_post_init__(self) -> None:
        _regions(self.data_residency)
        if not isinstance(self.personal_data_tag, str) or not self.personal_data_tag.strip():
            raise InvalidValue("personalDataTag", f"must be a non-empty tag, got {self.personal_data_tag!r}")

    @classmethod
    def from_config(cls, config: SwarmgateConfig | None) -> ComplianceSettings:
        """The section of ``config`` (defaults when absent). Raises
        ConfigError naming bad values."""
        raw: Any = config.section(SECTION) if config is not None else None
        return parse_section(cls, raw, SECTION, source=config.source if config is not None else None)

    @property
    def regions(self) -> tuple[str, ...] | None:
        """The allowed regions, lower case, in the configured order (``None``: unrestricted)."""
        return _regions(self.data_residency)

    @property
    def personal_controls(self) -> bool:
        """Whether requests marked personal are kept out of the cache (``gdpr`` or ``hipaa``)."""
        return self.gdpr or self.hipaa


def region_allowed(region: str, allowed: tuple[str, ...]) -> bool:
    """Whether ``region`` is one of ``allowed`` or a ``-`` sub-region of one
    (``eu-west-1`` is inside ``eu``; ``eu`` is not inside ``eu-west-1``)."""
    region = region.strip().lower()
    return any(region == a or region.startswith(a + "-") for a in allowed)
