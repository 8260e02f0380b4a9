"""Several provider types behind one manager: OpenAI, Claude, Qwen (DashScope),
a local Ollama server, and a composite that races OpenAI against Claude.

Set the keys (or the ``*_BASE_URL`` variables, for compatible servers) and run:

    .venv/bin/python examples/multi_provider.py

It sends one request to each provider, one through the ``cheap`` route, and
one race, and prints who answered, the model, the tokens and the cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from swarmgate import ProviderManager, SwarmgateError

CONFIG = Path(__file__).with_name("multi-provider.json")


async def main() -> None:
    async with ProviderManager(CONFIG) as manager:
        asks: list[dict[str, Any]] = [{"provider": name} for name in ("openai", "claude", "qwen", "ollama")]
        asks += [{"model": "cheap"}, {"provider": "fastest"}]
        for ask in asks:
            label = ask.get("provider") or ask.get("model")
            try:
                response = await manager.complete(prompt="Name one social insect.", max_tokens=50, **ask)
            except SwarmgateError as error:
                print(f"{label}: failed: {error}")
                continue
            print(
                f"{label}: {response.provider}/{response.model} "
                f"{response.tokens.input}+{response.tokens.output} tokens ${response.cost:.8f}: {response.content}"
            )


if __name__ == "__main__":
    anyio.run(main)
