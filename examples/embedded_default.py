"""The embedded default: no config, no API keys, no network.

    .venv/bin/python examples/embedded_default.py

``ProviderManager()`` with no config uses the simulated providers of the
``swarmgate-sim`` plugin; this sends a few requests and prints who answered,
including failovers away from the flaky simulated provider.
"""

from __future__ import annotations

import anyio

from swarmgate import NoProviderAvailableError, ProviderManager


async def main() -> None:
    async with ProviderManager() as manager:
        print("providers:", ", ".join(manager.providers()))
        for i in range(6):
            try:
                response = await manager.complete(prompt=f"Question {i}: what is a swarm?", max_tokens=40)
            except NoProviderAvailableError as error:
                print(f"#{i} failed: {error}")
                continue
            failed = [f"{a.provider}:{a.error_kind}" for a in response.attempts if not a.ok]
            note = f" (after {', '.join(failed)})" if failed else ""
            print(f"#{i} {response.provider}/{response.model} ${response.cost:.6f}{note}")


if __name__ == "__main__":
    anyio.run(main)
