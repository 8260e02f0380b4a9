"""dataResidency: a request inside the allowed regions is routed there, one
that cannot be served inside them is refused with a clear error and never
reaches a provider outside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from compliance_helpers import DRIVERS, config, scripted

from swarmgate import (
    CompletionRequest,
    FailureDecision,
    NoProviderAvailableError,
    ProviderManager,
    ServerError,
    Target,
    hookimpl,
)
from swarmgate_compliance import ComplianceService, DataResidencyError, region_allowed

pytestmark = pytest.mark.anyio


def residency(tmp_path: Path, regions: Any, **more: Any) -> dict[str, Any]:
    return config(tmp_path, compliance={"dataResidency": regions, **more})


async def test_a_request_inside_the_allowed_regions_is_routed_there(tmp_path: Path) -> None:
    async with ProviderManager(residency(tmp_path, "eu-west-1"), drivers=DRIVERS) as manager:
        response = await manager.complete(prompt="hi", model="m")
        assert response.provider == "eu"  # "us" comes first by priority, but is outside
        assert scripted(manager, "us").calls == []
        assert scripted(manager, "nowhere").calls == []
        assert len(scripted(manager, "eu").calls) == 1


async def test_a_request_outside_the_allowed_regions_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    async with ProviderManager(residency(tmp_path, "eu-west-1"), drivers=DRIVERS) as manager:
        with pytest.raises(NoProviderAvailableError) as caught:
            await manager.complete(prompt="hi", model="us/m")
        assert scripted(manager, "us").calls == []
    message = str(caught.value)
    assert "provider us is in us-west-2, outside the allowed regions [eu-west-1]" in message
    assert caught.value.status_code == 503


async def test_with_no_provider_inside_every_reason_is_listed(tmp_path: Path) -> None:
    async with ProviderManager(residency(tmp_path, ["ap-south-1", "ap-northeast-1"]), drivers=DRIVERS) as manager:
        with pytest.raises(NoProviderAvailableError) as caught:
            await manager.complete(prompt="hi", model="m")
        assert all(scripted(manager, name).calls == [] for name in ("us", "eu", "nowhere"))
    message = str(caught.value)
    assert "provider us is in us-west-2, outside the allowed regions [ap-south-1, ap-northeast-1]" in message
    assert "provider eu is in eu-west-1, outside the allowed regions [ap-south-1, ap-northeast-1]" in message
    assert "provider nowhere has no region, outside the allowed regions" in message


async def test_a_region_allows_its_sub_regions_and_lists_allow_several(tmp_path: Path) -> None:
    async with ProviderManager(residency(tmp_path, "EU"), drivers=DRIVERS) as manager:
        assert (await manager.complete(prompt="hi", model="m")).provider == "eu"
    async with ProviderManager(residency(tmp_path, ["us-west-2", "eu-west-1"]), drivers=DRIVERS) as manager:
        assert (await manager.complete(prompt="hi", model="m")).provider == "us"
    assert region_allowed("eu-west-1", ("eu",))
    assert not region_allowed("eu", ("eu-west-1",))
    assert not region_allowed("europe", ("eu",))


async def test_providers_without_a_region_may_be_allowed(tmp_path: Path) -> None:
    cfg = residency(tmp_path, "ap-south-1", allowProvidersWithoutRegion=True)
    async with ProviderManager(cfg, drivers=DRIVERS) as manager:
        assert (await manager.complete(prompt="hi", model="m")).provider == "nowhere"


async def test_a_provider_that_changes_region_is_judged_again(tmp_path: Path) -> None:
    async with ProviderManager(residency(tmp_path, "eu"), drivers=DRIVERS) as manager:
        service = manager.extensions["compliance"]
        assert isinstance(service, ComplianceService)
        assert service.residency_reason("us") is not None
        await manager.update_provider("us", {"region": "eu-central-1"})
        assert service.residency_reason("us") is None
        assert (await manager.complete(prompt="hi", model="m")).provider == "us"
        await manager.add_provider("later", {"type": "scripted", "region": "us-east-1", "models": {"m": {}}})
        with pytest.raises(NoProviderAvailableError, match="provider later is in us-east-1"):
            await manager.complete(prompt="hi", model="later/m")
        await manager.remove_provider("later")
        assert service.residency_reason("eu") is None


async def test_a_switch_to_a_target_outside_is_refused_before_the_call(tmp_path: Path) -> None:
    """An on_failure decision can put any target next; before_attempt still
    keeps the request inside the regions."""

    class SwitchToUs:
        @hookimpl
        def on_failure(self, request: CompletionRequest) -> FailureDecision:
            return FailureDecision.switch(Target("us", "m"))

    async with ProviderManager(residency(tmp_path, "eu-west-1"), drivers=DRIVERS, plugins=[SwitchToUs()]) as manager:
        scripted(manager, "eu").push(ServerError("boom", provider="eu"))
        with pytest.raises(NoProviderAvailableError) as caught:
            await manager.complete(prompt="hi", model="eu/m")
        assert scripted(manager, "us").calls == []
    refused = [a for a in caught.value.attempts if a.refused]
    assert [(a.provider, a.model) for a in refused] == [("us", "m")]
    assert "outside the allowed regions [eu-west-1]" in (refused[0].error or "")
    assert DataResidencyError.failover is True


async def test_without_data_residency_nothing_is_filtered_and_no_hook_runs(tmp_path: Path) -> None:
    async with ProviderManager(config(tmp_path), drivers=DRIVERS) as manager:
        assert (await manager.complete(prompt="hi", model="m")).provider == "us"
        names = [info.name for info in manager.plugins.plugins()]
        assert "compliance-data-residency" not in names
        assert "compliance-personal-data" not in names
        assert not manager.plugins.has_impls("filter_targets")
