"""A process that serves traffic through a ProviderManager with the audit
log, for the kill -9 test (``python audit_crash_worker.py DB N``).

It serves N requests, flushes the log, prints ``committed N`` and then keeps
serving (printing ``served K`` now and then) until it is killed.
"""

from __future__ import annotations

import sys

import anyio
import anyio.lowlevel

from swarmgate import ProviderManager


async def main(db: str, first: int) -> None:
    config = {
        "providers": {
            "sim": {
                "type": "sim",
                "timeScale": 0,
                "seed": 7,
                "models": {"m": {"inputCostPerToken": 1e-6, "outputCostPerToken": 2e-6}},
            }
        },
        "security": {"audit": {"path": db, "commitInterval": 20, "includeBodies": True}},
    }
    async with ProviderManager(config) as manager:
        audit = manager.extensions["audit"]
        for _ in range(first):
            await manager.complete(prompt="hello", caller="crash-test")
        await audit.flush()
        print(f"committed {first}", flush=True)
        served = first
        while True:
            await manager.complete(prompt="hello again", caller="crash-test")
            served += 1
            if served % 50 == 0:
                print(f"served {served}", flush=True)
            await anyio.lowlevel.checkpoint()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]))
