"""Complete and stream through two OpenAI-compatible servers with failover.

Point ``OPENAI_BASE_URL`` (and ``BACKUP_BASE_URL``) at any OpenAI-compatible
server (OpenAI itself with ``OPENAI_API_KEY``, vLLM, llama.cpp, LM Studio):

    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 .venv/bin/python examples/openai_compatible.py

Prints who answered, the cost, latency and tokens of a completion, then a
streamed answer; if the primary fails, the backup answers.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from swarmgate import FinishEvent, ProviderManager, TextDelta

CONFIG = Path(__file__).with_name("openai-compatible.json")


async def main() -> None:
    async with ProviderManager(CONFIG) as manager:
        response = await manager.complete(
            prompt="Explain swarm intelligence in one sentence.",
            model="gpt-4o-mini",
            options={"temperature": 0.2, "maxTokens": 100},
        )
        print(f"provider: {response.provider}/{response.model}")
        print(f"content: {response.content}")
        print(f"cost: ${response.cost:.8f}  latency: {response.latency:.1f} ms  tokens: {response.tokens.to_dict()}")
        print("attempts:", ", ".join(f"{a.provider}={'ok' if a.ok else a.error_kind}" for a in response.attempts))

        print("stream: ", end="")
        async for event in manager.stream(prompt="Name three social insects."):
            if isinstance(event, TextDelta):
                print(event.text, end="", flush=True)
            elif isinstance(event, FinishEvent) and event.response is not None:
                final = event.response
                print(f"\nstreamed by {final.provider}/{final.model}, ${final.cost:.8f}, {final.tokens.total} tokens")


if __name__ == "__main__":
    anyio.run(main)
