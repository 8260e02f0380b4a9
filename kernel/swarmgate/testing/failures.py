"""Helpers for tests that expect a request to fail (no pytest needed)."""

from __future__ import annotations

from typing import Any

from swarmgate.errors import NoProviderAvailableError, SwarmgateError
from swarmgate.manager import ProviderManager


def attempt_error(error: BaseException) -> SwarmgateError:
    """The typed error of the failed attempt behind ``error``:
    ``NoProviderAvailableError.last_error`` when there is one, else ``error``
    itself. Raises ``AssertionError`` for anything but a SwarmgateError."""
    assert isinstance(error, SwarmgateError), f"expected a SwarmgateError, got {type(error).__name__}: {error}"
    if isinstance(error, NoProviderAvailableError) and error.last_error is not None:
        return error.last_error
    return error


async def expect_failure(
    manager: ProviderManager, *, model: str, stream: bool = False, **fields: Any
) -> SwarmgateError:
    """Send one request (``prompt`` defaults to ``"Hello?"``) that must fail,
    streamed or not, and return the typed error of its failed attempt
    (:func:`attempt_error`). Raises ``AssertionError`` if it succeeds."""
    fields.setdefault("prompt", "Hello?")
    try:
        if stream:
            _ = [event async for event in manager.stream(model=model, **fields)]
        else:
            await manager.complete(model=model, **fields)
    except SwarmgateError as exc:
        return attempt_error(exc)
    raise AssertionError("the request succeeded; an error was expected")
