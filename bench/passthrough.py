"""The floor: a featureless Python pass-through proxy, for calibration.

An ASGI app on uvicorn (uvloop, httptools, one worker) that forwards each
``POST`` body to the upstream and its answer back -- streamed answers
piece by piece -- with nothing else: no parsing, no routing, no plugins.
``--client aiohttp`` uses aiohttp directly; ``--client httpx`` uses
swarmgate's pooled httpx client (:func:`swarmgate.http.make_client`:
httpx's API over aiohttp's transport). What a gateway costs beyond this is
its own work.

Run: ``python bench/passthrough.py --upstream http://127.0.0.1:PORT --port 0
[--client aiohttp|httpx]``; it prints the bound port on its first line.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class Passthrough:
    """Forward ``POST <path>`` to ``upstream + path``."""

    def __init__(self, upstream: str, client: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.kind = client
        self.session: Any = None

    async def startup(self) -> None:
        if self.kind == "aiohttp":
            import aiohttp

            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
        else:
            from swarmgate.config import ProviderConfig
            from swarmgate.http import make_client

            self.session = make_client(ProviderConfig(type="openai"), base_url=self.upstream)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await self.startup()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self.session is not None:
                        await (self.session.close() if self.kind == "aiohttp" else self.session.aclose())
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {"content-type": "application/json"}
        if self.kind == "aiohttp":
            async with self.session.post(self.upstream + scope["path"], data=body, headers=headers) as response:
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status,
                        "headers": [(b"content-type", response.headers.get("content-type", "").encode())],
                    }
                )
                async for chunk in response.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        else:
            request = self.session.build_request("POST", scope["path"], content=body, headers=headers)
            response = await self.session.send(request, stream=True)
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": response.status_code,
                        "headers": [(b"content-type", response.headers.get("content-type", "").encode())],
                    }
                )
                async for chunk in response.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            finally:
                await response.aclose()
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--client", choices=["aiohttp", "httpx"], default="aiohttp")
    args = parser.parse_args()
    config = uvicorn.Config(
        Passthrough(args.upstream, args.client),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
    sock = config.bind_socket()
    print(sock.getsockname()[1], flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
