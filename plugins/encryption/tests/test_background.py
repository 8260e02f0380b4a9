"""The background keyring refresh: two gateways sharing a keyring, where
one rotates its data key at once; the other loads the new key within a
refresh interval and reads the records written with it. Real time (a
50 ms interval), bounded by a timeout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from swarmgate import ProviderManager
from swarmgate_encryption import EncryptionPlugin, EncryptionService, TamperedError, key_id_of

pytestmark = pytest.mark.anyio

Config = Callable[..., dict[str, Any]]


async def test_a_gateway_learns_keys_made_by_another(make_config: Config, drivers: Any) -> None:
    config = make_config(keyRotation=3_600_000, refreshInterval=50)
    async with (
        ProviderManager(config, drivers=drivers, plugins=[EncryptionPlugin()]) as one,
        ProviderManager(config, drivers=drivers, plugins=[EncryptionPlugin()]) as two,
    ):
        writer, reader = one.extensions["encryption"], two.extensions["encryption"]
        assert isinstance(writer, EncryptionService)
        assert isinstance(reader, EncryptionService)
        new_key = await writer.rotate()
        record = writer.encrypt(b"written with the new key", b"a")
        assert key_id_of(record) == new_key
        with anyio.fail_after(5):
            while True:
                try:
                    assert reader.decrypt(record, b"a") == b"written with the new key"
                    break
                except TamperedError:  # not loaded yet: refused, never returned
                    await anyio.sleep(0.02)
        assert reader.current_key_id() == new_key  # loaded, and current there too
        assert reader.status()["refreshed_at"] is not None
    # Shut down cleanly: the refresh task is gone, the service still works.
    assert writer.decrypt(writer.encrypt(b"after shutdown", b"z"), b"z") == b"after shutdown"
