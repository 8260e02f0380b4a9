"""The shared scaffolding of httpx-based drivers (:class:`swarmgate.http.HTTPProvider`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from swarmgate.config import ModelConfig, ProviderConfig, TimeoutsConfig
from swarmgate.errors import InvalidRequestError
from swarmgate.http import HTTPProvider
from swarmgate.models import CompletionRequest, Message, ProviderEvent, ProviderReply
from swarmgate.provider import ProviderCall


class _Driver(HTTPProvider):
    async def complete(self, call: ProviderCall) -> ProviderReply:
        raise NotImplementedError

    async def stream(self, call: ProviderCall) -> AsyncIterator[ProviderEvent]:
        raise NotImplementedError
        yield  # pragma: no cover


def _call(timeout: float) -> ProviderCall:
    request = CompletionRequest(model="m", messages=(Message("user", "hi"),))
    return ProviderCall(request, "m", "m", ModelConfig(), timeout)


def _config(**fields: Any) -> ProviderConfig:
    return ProviderConfig(type="test", endpoint="http://upstream.test/v1/", **fields)


def test_request_timeout_honours_the_configured_connect_timeout() -> None:
    driver = _Driver("p", _config(timeout=60_000, timeouts=TimeoutsConfig(connect=2_500)))
    timeout = driver.request_timeout(_call(45.0))
    assert (timeout.read, timeout.write, timeout.pool) == (45.0, 45.0, 45.0)
    assert timeout.connect == 2.5
    assert driver.probe_timeout().connect == 2.5
    assert driver.probe_timeout().read == 60.0


@pytest.mark.parametrize(("timeout_ms", "connect"), [(60_000, 10.0), (4_000, 4.0)])
def test_request_timeout_connects_within_min_of_timeout_and_10s_by_default(timeout_ms: int, connect: float) -> None:
    driver = _Driver("p", _config(timeout=timeout_ms))
    assert driver.request_timeout(_call(30.0)).connect == connect
    assert driver.request_timeout(_call(30.0)).read == 30.0


@pytest.mark.anyio
async def test_client_is_pooled_between_start_and_aclose() -> None:
    driver = _Driver("p", _config())
    with pytest.raises(RuntimeError, match="not started"):
        _ = driver.client
    await driver.start()
    client = driver.client
    assert isinstance(driver.__dict__["_client"], httpx.AsyncClient)  # the proxy plugin looks there
    assert driver.endpoint == "http://upstream.test/v1"
    assert str(client.base_url) == "http://upstream.test/v1/"
    await driver.start()
    assert driver.client is client
    await driver.aclose()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="not started"):
        _ = driver.client


def test_encode_json_names_the_problem() -> None:
    driver = _Driver("p", _config())
    assert driver.encode_json({"a": "é"}, "m") == '{"a":"é"}'.encode()
    with pytest.raises(InvalidRequestError, match=r"cannot be encoded as JSON \(TypeError: .*set") as caught:
        driver.encode_json({"a": {1, 2}}, "m")
    assert (caught.value.provider, caught.value.model) == ("p", "m")
