"""The key-leak scan of the whole gateway (issue 8's done-when): "the scan
finds nothing after a run that exercised errors, retries, failover,
streaming and the admin API".

A real gateway runs as a subprocess (``qwen-swarm-enhanced serve``, uvicorn
on loopback, its access log on, structlog as JSON at DEBUG and stdlib
logging at DEBUG on its stderr) with the full plugin stack loaded from its
entry points: retry, breaker, health, cache with encryption, ratelimit,
budget, usage, analytics, prometheus, alerts with a webhook to a loopback
receiver, audit with bodies, compliance (gdpr), caller keys and the
dashboard. Three providers sit behind fake upstreams (two OpenAI wires, one
Anthropic wire) and take their keys from the environment, a key file, an
``apiKeys`` list with a literal key and an ``env`` key source; the
upstreams answer 401, 429, 500 and 400 with the key echoed in the error
body (as real ones do), fail health probes the same way, cut a stream, and
succeed. The official openai and anthropic SDKs send the traffic (streams
and not, retries, failover, cache hits, a rate-limited and an over-budget
caller key); the admin API is walked end to end (providers list, update
with a new key, key status, rotation by re-reading and with given keys,
config, analytics, metrics, exports, usage, caller keys create/list/revoke,
cache stats and invalidation, health checks, the dashboard feed,
``/metrics``, ``/openapi.json``, ``/health/providers``, GDPR erasure, a
config reload); the CLI reads what was written (``config get``, ``keys
list`` local and against the gateway, ``audit tail --json``, ``usage tail
--json``, ``export metrics`` local and against the gateway).

Then everything written is searched, with
:func:`swarmgate.testing.leaks.assert_no_secrets`, for every provider key
(rotated and patched-in ones included), every caller key, the admin key,
the encryption master key, the caller-key pepper and the webhook secret,
whole or by any slice of six characters: every HTTP response (status line,
headers and body bytes, streams included), the gateway's stdout and stderr,
every file under ``SWARMGATE_HOME`` as raw bytes (usage, audit, caller-key
and keyring databases with their WAL and SHM files, read while the gateway
runs and again after it stopped), every webhook request (headers and
body), and the CLI's output. The one place a caller key may appear is the
answer that issued it: those responses are left out, and the test checks
each holds its key (so the scan would have found it).

The keys carry no ``sk-`` prefix, so the log redaction's pattern for
key-looking strings cannot hide a leak that the scrubbing missed.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anthropic
import attrs
import httpx
import openai
import pytest
import structlog
from click.testing import CliRunner

from swarmgate.logs import fingerprint
from swarmgate.plugins import ALLOW_ENV, BLOCK_ENV
from swarmgate.testing import FakeUpstream, ScriptedReply
from swarmgate.testing.anthropic_wire import AnthropicWire
from swarmgate.testing.leaks import assert_no_secrets, find_secrets
from swarmgate.testing.loopback import run_in_thread
from swarmgate.testing.openai_wire import OpenAIWire
from swarmgate.testing.upstream import DEFAULT_CONTENT
from swarmgate_webhook.testing import WebhookReceiver

#: Every plugin of the run, by distribution; only these load (SWARMGATE_PLUGINS).
STACK = (
    "swarmgate",
    "swarmgate-openai",
    "swarmgate-claude",
    "swarmgate-server",
    "swarmgate-retry",
    "swarmgate-breaker",
    "swarmgate-health",
    "swarmgate-cache",
    "swarmgate-encryption",
    "swarmgate-ratelimit",
    "swarmgate-budget",
    "swarmgate-usage",
    "swarmgate-analytics",
    "swarmgate-prometheus",
    "swarmgate-alerts",
    "swarmgate-webhook",
    "swarmgate-audit",
    "swarmgate-compliance",
    "swarmgate-keys",
    "swarmgate-dashboard",
)
#: Their hook plugins' entry points (``/admin/status`` lists them; prometheus is an exporter).
ENTRY_POINTS = {
    "retry",
    "breaker",
    "health",
    "cache",
    "encryption",
    "ratelimit",
    "budget",
    "usage",
    "analytics",
    "alerts",
    "webhook",
    "audit",
    "compliance",
    "keys",
    "dashboard",
}
OA_MODEL = "gpt-4o-mini"
CL_MODEL = "claude-haiku-4-5"
PRICES = {"inputCostPerToken": 0.000001, "outputCostPerToken": 0.000002}
#: Seconds the gateway has to start (it imports the whole stack).
START_TIMEOUT = 30.0

# The gateway runs this: the CLI's ``serve``, with every log at DEBUG.
LAUNCHER = """
import logging, sys
from swarmgate.logs import configure_logging
configure_logging("DEBUG", json=True)
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
from swarmgate.cli import main
main(sys.argv[1:])
"""


def new_key(label: str) -> str:
    """A random key with no well-known prefix (see the module docstring)."""
    return f"{label}{secrets.token_urlsafe(24)}"


@attrs.define
class Secrets:
    """Every secret the run hands out."""

    oa_env: str = attrs.field(factory=lambda: new_key("Pe"))
    oa_file: list[str] = attrs.field(factory=lambda: [new_key("Pf"), new_key("Pf")])
    cl_env: str = attrs.field(factory=lambda: new_key("Ce"))
    cl_literal: str = attrs.field(factory=lambda: new_key("Cl"))
    oa2_source: list[str] = attrs.field(factory=lambda: [new_key("Qs"), new_key("Qs")])
    #: Handed to the gateway later: a PATCH, a re-read key file, rotation with given keys.
    later: list[str] = attrs.field(factory=list)
    team: str = attrs.field(factory=lambda: new_key("Tm"))
    admin: str = attrs.field(factory=lambda: new_key("Ad"))
    pepper: str = attrs.field(factory=lambda: new_key("Pp"))
    master: str = attrs.field(factory=lambda: base64.b64encode(os.urandom(32)).decode())
    webhook: str = attrs.field(factory=lambda: new_key("Wh"))
    #: Caller keys the gateway issued (through the admin API).
    issued: list[str] = attrs.field(factory=list)

    def provider_keys(self) -> list[str]:
        return [self.oa_env, *self.oa_file, self.cl_env, self.cl_literal, *self.oa2_source, *self.later]

    def all(self) -> list[str]:
        others = [self.team, self.admin, self.pepper, self.master, self.webhook, *self.issued]
        return [*self.provider_keys(), *others]

    def env(self) -> dict[str, str]:
        return {
            "LEAK_OA_KEY": self.oa_env,
            "LEAK_CL_KEY": self.cl_env,
            "LEAK_OA2_A": self.oa2_source[0],
            "LEAK_OA2_B": self.oa2_source[1],
            "LEAK_TEAM_KEY": self.team,
            "SWARMGATE_ADMIN_KEY": self.admin,
            "LEAK_PEPPER": self.pepper,
            "LEAK_MASTER_KEY": self.master,
            "LEAK_WEBHOOK_SECRET": self.webhook,
        }


# -- recording every HTTP answer --------------------------------------------------


@attrs.define
class Exchange:
    """One HTTP answer as it came over the wire."""

    method: str
    path: str
    status: int
    headers: list[tuple[str, str]]
    body: bytearray = attrs.field(factory=bytearray)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


def recording_transport(http: ModuleType, log: list[Exchange]) -> Any:
    """A transport of ``http`` (``httpx`` or ``httpx2``, see :func:`sdk_http`)
    that records each answer in ``log``, streams as they are read."""

    class Tee(http.SyncByteStream):  # type: ignore[name-defined,misc]
        """A response body that keeps a copy of every chunk its reader takes."""

        def __init__(self, inner: Any, exchange: Exchange) -> None:
            self._inner = inner
            self._exchange = exchange

        def __iter__(self) -> Iterator[bytes]:
            for chunk in self._inner:
                self._exchange.body += chunk
                yield chunk

        def close(self) -> None:
            self._inner.close()

    class Recording(http.BaseTransport):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            self._inner = http.HTTPTransport()

        def handle_request(self, request: Any) -> Any:
            response = self._inner.handle_request(request)
            exchange = Exchange(
                request.method,
                request.url.raw_path.decode(),
                response.status_code,
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw],
            )
            with _LOG_LOCK:
                log.append(exchange)
            return http.Response(
                status_code=response.status_code,
                headers=response.headers,
                stream=Tee(response.stream, exchange),
                extensions=response.extensions,
                request=request,
            )

        def close(self) -> None:
            self._inner.close()

    return Recording()


_LOG_LOCK = threading.Lock()


def sdk_http(sdk: ModuleType) -> ModuleType:
    """The HTTP library an SDK's client is built on: ``httpx``, or ``httpx2``
    for recent openai and anthropic releases (which refuse an httpx client)."""
    for cls in sdk.DefaultHttpxClient.__mro__:
        name = cls.__module__.partition(".")[0]
        if name in ("httpx", "httpx2"):
            return importlib.import_module(name)
    raise AssertionError(f"{sdk.__name__}: no httpx client class")


# -- the gateway --------------------------------------------------------------------


def echo(status: int, key: str, **kw: Any) -> ScriptedReply:
    """An upstream error whose body quotes a key, as real upstreams do."""
    return ScriptedReply.error(status, f"Incorrect API key provided: {key}. Request key={key}", **kw)


def write_config(etc: Path, keys: Secrets, oa: str, cl: str, oa2: str, webhook: str) -> Path:
    (etc / "secrets").mkdir(parents=True)
    (etc / "secrets" / "oa.keys").write_text("# the openai keys\n" + "\n".join(keys.oa_file) + "\n")
    config = {
        "providers": {
            "oa": {
                "type": "openai",
                "endpoint": oa,
                "apiKey": "${LEAK_OA_KEY}",
                "apiKeyFile": "secrets/oa.keys",
                "priority": 1,
                "timeout": 5000,
                "models": {OA_MODEL: PRICES},
            },
            "cl": {
                "type": "claude",
                "endpoint": cl,
                "apiKeys": ["${LEAK_CL_KEY}", keys.cl_literal],
                "priority": 2,
                "timeout": 5000,
                "models": {CL_MODEL: PRICES},
            },
            "oa2": {
                "type": "openai",
                "endpoint": oa2,
                "keySource": {"type": "env", "variables": ["LEAK_OA2_A", "LEAK_OA2_B"]},
                "priority": 3,
                "timeout": 5000,
                "models": {OA_MODEL: PRICES},
                "healthCheck": {"enabled": True, "failureThreshold": 2, "checks": [{"type": "ping", "interval": 150}]},
            },
        },
        "routes": {
            "chat": [f"oa/{OA_MODEL}", f"cl/{CL_MODEL}", f"oa2/{OA_MODEL}"],
            "claude-first": [f"cl/{CL_MODEL}", f"oa2/{OA_MODEL}"],
        },
        "routing": {
            "retry": {"maxAttempts": 2, "initialDelay": 1, "maxDelay": 5},
            "circuitBreaker": {"failureThreshold": 4, "timeout": 60000},
        },
        "optimization": {"caching": {"enabled": True, "ttl": 60000}},
        "monitoring": {
            "usageLog": {"commitInterval": 20},
            "analytics": {},
            "alerts": {
                "errorRate": {"threshold": 0.2, "minRequests": 4},
                "webhook": {"url": webhook, "secret": "${LEAK_WEBHOOK_SECRET}", "backoff": 5},
            },
        },
        "security": {
            "callerKeys": {"pepperEnv": "LEAK_PEPPER"},
            "encryption": {"enabled": True, "masterKeyEnv": "LEAK_MASTER_KEY"},
            "audit": {"includeBodies": True, "commitInterval": 20},
            "compliance": {"gdpr": True},
        },
        "server": {
            "adminKey": "${SWARMGATE_ADMIN_KEY}",
            "apiKeys": [{"key": "${LEAK_TEAM_KEY}", "name": "team"}],
            "shutdownTimeout": 5000,
            "dashboard": {"sampleInterval": 250},
        },
    }
    path = etc / "gateway.json"
    path.write_text(json.dumps(config, indent=2))
    return path


@attrs.define
class Gateway:
    """The gateway subprocess and where its output goes."""

    process: subprocess.Popen[bytes]
    url: str
    stdout: Path
    stderr: Path

    def stop(self) -> int:
        """SIGTERM (drain, flush the logs, close) and wait for the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=20)


def start_gateway(config: Path, env: dict[str, str], out: Path) -> Gateway:
    stdout, stderr = out / "gateway.stdout", out / "gateway.stderr"
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, "serve", "--config", str(config), "--port", "0", "--access-log"],
        env=env,
        stdout=stdout.open("wb"),
        stderr=stderr.open("wb"),
    )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        for line in stdout.read_text(errors="replace").splitlines():
            if "listening on http://" in line:
                return Gateway(process, line.rsplit(" ", 1)[1].strip(), stdout, stderr)
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError(f"the gateway did not start:\n{stderr.read_text(errors='replace')[-4000:]}")
        time.sleep(0.05)


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def files_under(root: Path) -> dict[str, bytes]:
    """The raw bytes of every file under ``root`` (a file that vanished while read is skipped)."""
    found: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            try:
                found[str(path.relative_to(root))] = path.read_bytes()
            except FileNotFoundError:
                continue
    return found


# -- the run -------------------------------------------------------------------------


@attrs.define
class Run:
    """What the run talks to, and everything it collects."""

    url: str
    keys: Secrets
    oa: FakeUpstream
    cl: FakeUpstream
    oa2: FakeUpstream
    exchanges: list[Exchange] = attrs.field(factory=list)
    errors: dict[str, str] = attrs.field(factory=dict)  # SDK exceptions' texts, by label

    def script(self, upstream: FakeUpstream, *replies: ScriptedReply) -> None:
        """Queue ``replies`` at ``upstream``, after checking that every reply
        queued before was taken (the run goes where it is meant to)."""
        self.settled()
        upstream.enqueue(*replies)

    def settled(self) -> None:
        """Every scripted reply was taken."""
        left = {u.url: u.pending for u in (self.oa, self.cl, self.oa2) if u.pending}
        assert not left, f"scripted replies not taken: {left}"

    def openai(self, key: str) -> openai.OpenAI:
        http = sdk_http(openai)
        client = http.Client(transport=recording_transport(http, self.exchanges), timeout=20)
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, http_client=client)

    def anthropic(self, key: str) -> anthropic.Anthropic:
        http = sdk_http(anthropic)
        client = http.Client(transport=recording_transport(http, self.exchanges), timeout=20)
        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0, http_client=client)

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            transport=recording_transport(httpx, self.exchanges),
            headers={"authorization": f"Bearer {self.keys.admin}"},
            timeout=20,
        )

    def expect_error(self, label: str, status: int, call: Callable[[], Any]) -> None:
        """Run ``call``; it must raise an SDK error with ``status`` (its text is kept)."""
        with pytest.raises((openai.APIStatusError, anthropic.APIStatusError)) as raised:
            call()
        exc = raised.value
        assert isinstance(exc, openai.APIStatusError | anthropic.APIStatusError)
        self.errors[label] = f"{exc!s} {exc!r} {exc.body!r}"
        assert exc.status_code == status, f"{label}: {exc.status_code} {exc}"


def chat(client: openai.OpenAI, prompt: str, model: str = "chat", **extra: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}], **extra)


def chat_stream(client: openai.OpenAI, prompt: str, model: str = "chat") -> str:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def exercise_traffic(run: Run, main_key: str) -> None:
    """Errors, retries, failover, streams and cache hits through both SDKs."""
    keys, oa, cl, oa2 = run.keys, run.oa, run.cl, run.oa2
    client = run.openai(main_key)
    claude = run.anthropic(keys.team)
    for i in range(3):  # the oa keys in turn
        assert chat(client, f"plain {i}").choices[0].message.content
    # A 401 echoing the key: set aside, the same target again with the next key.
    run.script(oa, echo(401, keys.oa_env))
    assert chat(client, "401 then the next key").choices[0].message.content
    # A 429 echoing a key, retried after its Retry-After.
    run.script(oa, echo(429, keys.oa_file[0], headers={"retry-after-ms": "5"}))
    assert chat(client, "429 retried").choices[0].message.content
    # Two 500s (a retry, then failover to the Anthropic wire), keys echoed.
    run.script(oa, echo(500, keys.oa_file[1]), echo(500, keys.oa_file[0]))
    answer = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "500 fails over"}]
    )
    assert answer.headers["x-swarmgate-provider"] == "cl"
    # Every cl key rejected (echoed): the Anthropic SDK's request fails over to oa2.
    run.script(cl, echo(401, keys.cl_env), echo(401, keys.cl_literal))
    failed_over = claude.messages.with_raw_response.create(
        model="claude-first", max_tokens=64, messages=[{"role": "user", "content": "all cl keys rejected"}]
    )
    assert failed_over.headers["x-swarmgate-provider"] == "oa2"
    assert failed_over.parse().content
    # A 429 at cl, retried; then an Anthropic stream.
    run.script(cl, echo(429, keys.cl_env, headers={"retry-after-ms": "5"}))
    assert claude.messages.create(model=CL_MODEL, max_tokens=64, messages=[{"role": "user", "content": "cl 429"}])
    with claude.messages.stream(
        model=CL_MODEL, max_tokens=64, messages=[{"role": "user", "content": "an anthropic stream"}]
    ) as stream:
        assert "".join(stream.text_stream)
    # Streams: a 401 and two 500s before the first token (set aside, retried,
    # failed over), then a stream cut after output started (an error chunk).
    run.script(oa, echo(401, keys.oa_file[1]))
    assert chat_stream(client, "stream after a 401")
    run.script(oa, echo(500, keys.oa_env), echo(500, keys.oa_file[0]))
    assert chat_stream(client, "stream fails over")
    run.script(oa, ScriptedReply(content="a long answer that breaks off here", cut_after=2))
    try:
        chat_stream(client, "stream cut", model=f"oa/{OA_MODEL}")
    except openai.APIError as exc:
        run.errors["stream cut"] = f"{exc!s} {exc!r} {getattr(exc, 'body', None)!r}"
    else:
        raise AssertionError("the cut stream did not end with an error")
    # Errors that reach the caller, with the upstream's (echoing) message.
    run.script(oa2, echo(400, keys.oa2_source[1]))
    run.expect_error("invalid request", 400, lambda: chat(client, "bad request", model=f"oa2/{OA_MODEL}"))
    run.script(cl, echo(400, keys.cl_literal))
    run.expect_error(
        "anthropic sdk, invalid request",
        400,
        lambda: claude.messages.create(
            model=f"cl/{CL_MODEL}", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        ),
    )
    run.settled()
    # Cache: the same deterministic question twice; the second is a hit.
    first = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "cache me"}], temperature=0
    )
    second = client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "cache me"}], temperature=0
    )
    assert (first.headers["x-swarmgate-cache"], second.headers["x-swarmgate-cache"]) == ("miss", "hit")
    # Callers without a usable key.
    run.expect_error("no key", 401, lambda: chat(run.openai(new_key("Zz")), "who am I"))


def issue_keys(run: Run, admin: httpx.Client) -> dict[str, str]:
    """Caller keys issued through the admin API, by name; each checked at once."""
    keys = run.keys
    issued: dict[str, str] = {}

    def create(body: dict[str, Any]) -> str:
        answer = admin.post("/admin/keys", json=body)
        assert answer.status_code == 201, answer.text
        assert answer.json()["warnings"] == []  # the store alone switches ratelimit and budget on
        key: str = answer.json()["key"]
        keys.issued.append(key)
        issued[body["name"]] = key
        return key

    status = admin.get("/admin/status")
    assert status.status_code == 200
    missing = ENTRY_POINTS - set(status.json()["plugins"])
    assert not missing, f"plugins not active: {sorted(missing)}"
    create({"name": "main"})
    limited = create({"name": "limited", "requestsPerMinute": 2, "burstCapacity": 2})
    thrifty = create({"name": "thrifty", "dailyBudget": 0.000001})
    doomed = create({"name": "doomed", "models": [OA_MODEL]})
    # Per-key limits, enforced with no rateLimiting/budgetLimits section.
    limited_client = run.openai(limited)
    for i in range(2):
        assert chat(limited_client, f"limited {i}").choices[0].message.content
    run.expect_error("rate limited", 429, lambda: chat(limited_client, "limited 3"))
    assert "rate limit" in run.errors["rate limited"]
    run.expect_error("over budget", 429, lambda: chat(run.openai(thrifty), "thrifty"))
    assert "budget" in run.errors["over budget"]
    # Allowed models, then revocation.
    doomed_client = run.openai(doomed)
    assert chat(doomed_client, "doomed", model=OA_MODEL).choices[0].message.content
    run.expect_error("model not allowed", 403, lambda: chat(doomed_client, "x", model=f"cl/{CL_MODEL}"))
    assert admin.get("/admin/keys").status_code == 200
    assert admin.get("/admin/keys/doomed").status_code == 200
    assert admin.delete("/admin/keys/doomed").status_code == 200
    run.expect_error("revoked", 401, lambda: chat(doomed_client, "revoked"))
    return issued


def exercise_admin(run: Run, admin: httpx.Client, config: Path, main_key: str) -> None:
    """The rest of the admin API, with traffic between the changes."""
    keys, oa, oa2 = run.keys, run.oa, run.oa2
    # Providers: list, one, update with a new key (used at once, then echoed).
    assert admin.get("/admin/providers").status_code == 200
    assert admin.get("/admin/providers/cl").status_code == 200
    patched = new_key("Pa")
    keys.later.append(patched)
    assert admin.patch("/admin/providers/oa", json={"apiKey": patched}).status_code == 200
    main = run.openai(main_key)
    for i in range(4):
        assert chat(main, f"after the patch {i}").choices[0].message.content
    run.script(oa, echo(401, patched))
    assert chat(main, "patched key rejected").choices[0].message.content
    # Rotation: the key file changes and is re-read; oa2 gets keys given in the call.
    reread = new_key("Rr")
    keys.later.append(reread)
    (config.parent / "secrets" / "oa.keys").write_text(f"{keys.oa_file[0]}\n{reread}\n")
    rotated = admin.post("/admin/providers/oa/keys/rotate")
    assert rotated.status_code == 200, rotated.text
    assert fingerprint(reread) in rotated.json()["keys"]
    given = [new_key("Gv"), new_key("Gv")]
    keys.later += given
    rotated = admin.post("/admin/providers/oa2/keys/rotate", json={"keys": given})
    assert rotated.json()["keys"] == [fingerprint(k) for k in given]
    for name in ("oa", "cl", "oa2"):
        assert admin.get(f"/admin/providers/{name}/keys").status_code == 200
    for i in range(4):
        assert chat(main, f"after the rotation {i}").choices[0].message.content
    run.script(oa, echo(401, reread))
    assert chat(main, "rotated keys echoed").choices[0].message.content
    for i in range(2):  # each given key once
        assert chat(main, f"oa2 after the rotation {i}", model=f"oa2/{OA_MODEL}").choices[0].message.content
    # Errors that reach the caller after retries, twice: the breaker opens on oa2 (an alert).
    run.script(oa2, *(echo(500, k) for k in (*given, *given)))
    for i in range(2):
        run.expect_error(f"exhausted {i}", 502, lambda: chat(main, "exhausted", model=f"oa2/{OA_MODEL}"))
    run.settled()
    # oa2's health probes fail with its (echoed) keys: it is marked down (an alert).
    oa2.models_reply = echo(401, given[0])
    probed = admin.post("/admin/health/check")
    assert probed.status_code == 200
    assert probed.json()["oa2"]["healthy"] is False
    wait_for(
        lambda: any(
            row["name"] == "oa2" and not row["healthy"] for row in admin.get("/health/providers").json()["providers"]
        ),
        what="oa2 marked unhealthy by its probes",
    )
    # Everything an operator reads.
    for path in (
        "/admin/config",
        "/admin/analytics?window=1h",
        "/admin/metrics",
        "/admin/export?format=json",
        "/admin/export?format=csv",
        "/admin/export?format=prometheus",
        "/admin/recommendations",
        "/admin/usage?limit=500",
        "/admin/cache/stats",
        "/admin/keys",
        "/admin/status",
        "/dashboard/api/summary?window=1h",
        "/dashboard",
        "/metrics",
        "/openapi.json",
        "/health",
        "/health/providers",
        "/v1/models",
    ):
        answer = admin.get(path)
        assert answer.status_code == 200, f"{path}: {answer.status_code} {answer.text[:300]}"
    assert admin.post("/admin/cache/invalidate", json={"all": True}).status_code == 200
    # GDPR erasure of one caller, and a config reload (the file is the truth again).
    assert admin.delete("/admin/callers/limited/records").status_code == 200
    reloaded = admin.post("/admin/config/reload")
    assert reloaded.status_code == 200, reloaded.text
    assert chat(main, "after the reload").choices[0].message.content


def run_cli(args: list[str]) -> str:
    """One CLI command in this process; its output (stdout and stderr).
    The CLI sets structlog up (to this test's captured stderr) when nothing
    has; that is undone afterwards, so that no later test logs to a stream
    pytest has closed."""
    from swarmgate.cli import build_cli

    saved = structlog.get_config() if structlog.is_configured() else None
    try:
        result = CliRunner().invoke(build_cli(), args)
    finally:
        if saved is None:
            structlog.reset_defaults()
        else:
            structlog.configure(**saved)
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result.output


def test_no_secret_appears_in_anything_the_gateway_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    keys = Secrets()
    home, etc = tmp_path / "home", tmp_path / "etc"
    home.mkdir()
    shared = {**keys.env(), "SWARMGATE_HOME": str(home), ALLOW_ENV: ",".join(STACK)}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMGATE_")}
    env.update(shared, PYTHONUNBUFFERED="1")
    for name, value in shared.items():
        monkeypatch.setenv(name, value)  # the CLI, in this process, reads the same
    for name in (BLOCK_ENV, "SWARMGATE_URL", "SWARMGATE_CONFIG"):
        monkeypatch.delenv(name, raising=False)

    blobs: dict[str, str | bytes] = {}
    # A failure inside the servers' blocks is raised after them, so that it is
    # not wrapped in the exception groups of their event loops.
    failure: BaseException | None = None
    with (
        FakeUpstream.in_thread(OpenAIWire()) as oa,
        FakeUpstream.in_thread(AnthropicWire()) as cl,
        FakeUpstream.in_thread(OpenAIWire()) as oa2,
        run_in_thread(WebhookReceiver(secret=keys.webhook)) as receiver,
    ):
        config = write_config(etc, keys, oa.url, cl.url, oa2.url, receiver.url)
        gateway = start_gateway(config, env, tmp_path)
        run = Run(gateway.url, keys, oa, cl, oa2)
        cli_live: dict[str, str] = {}
        try:
            with run.admin() as admin:
                issued = issue_keys(run, admin)
                exercise_traffic(run, issued["main"])
                exercise_admin(run, admin, config, issued["main"])
                wait_for(lambda: receiver.accepted, what="an alert at the webhook receiver")
            cli_live["keys list --url"] = run_cli(["keys", "list", "--url", gateway.url, "--json"])
            cli_live["export metrics --url"] = run_cli(
                ["export", "metrics", "--format", "prometheus", "--url", gateway.url]
            )
            for name, data in files_under(home).items():
                blobs[f"while running: {name}"] = data
        except BaseException as exc:  # noqa: BLE001 - raised below, outside the servers' blocks
            failure = exc
        finally:
            status = gateway.stop()
        upstream_seen = json.dumps([r.headers for s in (oa, cl, oa2) for r in s.requests])
        hooks = list(receiver.requests)
    if failure is not None:
        raise failure
    assert status == 0, gateway.stderr.read_text(errors="replace")[-4000:]

    for name, data in files_under(home).items():
        blobs[f"after the stop: {name}"] = data
    cli = {
        **cli_live,
        "config get": run_cli(["config", "get", "--config", str(config), "--json"]),
        "config get providers": run_cli(["config", "get", "providers", "--config", str(config)]),
        "keys list": run_cli(["keys", "list", "--config", str(config), "--json"]),
        "audit tail": run_cli(["audit", "tail", "--json", "--config", str(config)]),
        "usage tail": run_cli(["usage", "tail", "-n", "500", "--json", "--config", str(config)]),
        "export metrics": run_cli(["export", "metrics", "--format", "json", "--config", str(config)]),
    }
    for label, output in cli.items():
        blobs[f"cli {label}"] = output
    stdout, stderr = gateway.stdout.read_bytes(), gateway.stderr.read_bytes()
    blobs["gateway stdout"] = stdout
    blobs["gateway stderr"] = stderr
    own_out, own_err = capfd.readouterr()  # this process: the CLI's logs, the fakes'
    blobs["test process stdout"] = own_out
    blobs["test process stderr"] = own_err
    for i, hook in enumerate(hooks):
        blobs[f"webhook {i} headers"] = json.dumps(hook.headers)
        blobs[f"webhook {i} body"] = hook.body
    for label, text in run.errors.items():
        blobs[f"sdk error: {label}"] = text
    issuing = [e for e in run.exchanges if e.method == "POST" and e.path == "/admin/keys" and e.status == 201]
    for i, exchange in enumerate(e for e in run.exchanges if e not in issuing):
        blobs[f"http {i}: {exchange.label}: head"] = json.dumps(exchange.headers)
        blobs[f"http {i}: {exchange.label}: body"] = bytes(exchange.body)

    # The scan is not vacuous: every provider key reached an upstream (and the
    # upstreams echoed them back); each issued key is in its own answer, and
    # nowhere else; set-aside keys are logged by fingerprint; the logs are
    # verbose; the databases and the webhook got their share.
    unused = [fingerprint(k) for k in keys.provider_keys() if k not in upstream_seen]
    assert not unused, f"provider keys never sent upstream: {unused}"
    assert len(issuing) == len(keys.issued) == len(issued)
    for exchange, key in zip(issuing, keys.issued, strict=True):
        assert find_secrets({"issued": bytes(exchange.body)}, [key])
    log = stderr.decode(errors="replace")
    assert '"provider_key_set_aside"' in log
    assert fingerprint(keys.oa_env) in log
    assert '"literal_api_key_in_config"' in log
    assert "httpcore" in log  # stdlib DEBUG records were written too
    for name in ("usage.db", "audit.db", "keys.db", "encryption-keys.db"):
        assert f"after the stop: {name}" in blobs, f"{name} was not written"
    assert any(label.startswith("while running") and label.endswith("-wal") for label in blobs)
    assert hooks
    assert len(run.exchanges) > 60
    # Prompts and completions are in no log line, and (encrypted audit bodies) in no file.
    written = [stdout, stderr, *(v for k, v in blobs.items() if k.startswith(("while running", "after the stop")))]
    for text in ("500 fails over", "an anthropic stream", "rotated keys echoed", DEFAULT_CONTENT):
        assert not any(text.encode() in blob for blob in written if isinstance(blob, bytes)), text
    assert_no_secrets(blobs, keys.all())
    assert time.monotonic() - started < 60
