"""The key-leak scan: a run that exercises errors, retries, failover,
streaming and rotation, then a search of everything it wrote for the keys.

Three providers on fake upstreams (two OpenAI wires, one Anthropic wire)
take their keys from the environment, a key file, a list with a literal key,
and an ``env`` key source. The upstreams echo keys back in their error
bodies (401, 429, 500), as real ones do. Captured: structlog output (JSON,
every level), stdlib logging (every logger, DEBUG, httpx and httpcore
included), the process's stdout and stderr, every exception's text, repr,
``to_dict()`` and traceback, every response and attempt, the live config
(``to_dict``, ``repr``), ``provider_key_status``, health details,
analytics and every exporter's output, the CLI's ``config get`` and
``usage tail``, and the usage log's SQLite files. No key, nor any slice of
six characters of one, may appear anywhere: only fingerprints
(``key:1a2b3c4d``). The keys carry no ``sk-`` prefix on purpose, so the
log redaction's pattern for key-looking strings cannot hide a leak that the
kernel's own scrubbing missed.

:func:`swarmgate.testing.leaks.assert_no_secrets` is the reusable part: the
admin API and caller-key scans call it with their own blobs.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import secrets
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import attrs
import pytest
import structlog
from click.testing import CliRunner

from swarmgate import (
    ConfigError,
    ErrorEvent,
    FinishEvent,
    ProviderManager,
    StreamEvent,
    SwarmgateError,
)
from swarmgate.config import to_dict
from swarmgate.logs import fingerprint, redact_secrets
from swarmgate.plugins import ALLOW_ENV
from swarmgate.testing import FakeUpstream, ScriptedReply
from swarmgate.testing.anthropic_wire import AnthropicWire
from swarmgate.testing.leaks import assert_no_secrets, find_secrets

pytestmark = pytest.mark.anyio

#: The plugins active in the run, when installed (the scan covers what they write).
PLUGINS = (
    "swarmgate-openai",
    "swarmgate-claude",
    "swarmgate-retry",
    "swarmgate-breaker",
    "swarmgate-usage",
    "swarmgate-analytics",
    "swarmgate-prometheus",
    "swarmgate-alerts",
)
OA_MODEL = "gpt-4o-mini"
CL_MODEL = "claude-haiku-4-5"


def installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def new_key(label: str) -> str:
    """A random key with no well-known prefix (see the module docstring)."""
    return f"{label}-{secrets.token_urlsafe(24)}"


@attrs.define
class Keys:
    """Every key the run hands out, by where it comes from."""

    oa_env: str = attrs.field(factory=lambda: new_key("oaenv"))
    oa_file: list[str] = attrs.field(factory=lambda: [new_key("oafile"), new_key("oafile")])
    cl_env: str = attrs.field(factory=lambda: new_key("clenv"))
    cl_literal: str = attrs.field(factory=lambda: new_key("cllit"))
    oa2_source: list[str] = attrs.field(factory=lambda: [new_key("oa2src"), new_key("oa2src")])
    rotated: list[str] = attrs.field(factory=list)  # handed out later, by rotation

    def all(self) -> list[str]:
        return [self.oa_env, *self.oa_file, self.cl_env, self.cl_literal, *self.oa2_source, *self.rotated]


@attrs.define
class Capture:
    """Everything the run wrote, as labelled blobs."""

    blobs: dict[str, str | bytes] = attrs.field(factory=dict)

    def add(self, label: str, value: Any) -> None:
        text = value if isinstance(value, str | bytes) else _dump(value)
        label = f"{label} #{len(self.blobs)}" if label in self.blobs else label
        self.blobs[label] = text

    def error(self, label: str, exc: BaseException) -> None:
        self.add(f"{label}: str", str(exc))
        self.add(f"{label}: repr", repr(exc))
        self.add(f"{label}: traceback", "".join(traceback.format_exception(exc)))
        if isinstance(exc, SwarmgateError):
            self.add(f"{label}: to_dict", exc.to_dict())
            self.add(f"{label}: attempts", [a.to_dict() for a in exc.attempts])
            self.add(f"{label}: attempt reprs", repr(exc.attempts))


def _dump(value: Any) -> str:
    try:
        return json.dumps(value, default=repr, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


@contextmanager
def captured_logs() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """structlog (JSON, DEBUG and up) and stdlib logging (every logger, DEBUG) into buffers."""
    events = io.StringIO()
    records = io.StringIO()
    saved = structlog.get_config() if structlog.is_configured() else None
    structlog.configure(
        processors=[
            redact_secrets,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=repr),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(file=events),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(records)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield events, records
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        # Back to what was there (not a new chain bound to this test's
        # captured stderr, which pytest closes: later tests would log to it).
        if saved is None:
            structlog.reset_defaults()
        else:
            structlog.configure(**saved)


def written_files(directory: Path, pattern: str) -> dict[str, bytes]:
    """The bytes of every file matching ``pattern`` (a SQLite database and its -wal/-shm)."""
    return {file.name: file.read_bytes() for file in sorted(directory.glob(pattern))}


def echo(status: int, key: str, **kw: Any) -> ScriptedReply:
    """An upstream error whose body quotes a key, as real upstreams do."""
    return ScriptedReply.error(status, f"Incorrect API key provided: {key}. Request key={key}", **kw)


@asynccontextmanager
async def upstreams() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream, FakeUpstream]]:
    async with FakeUpstream() as oa, FakeUpstream(AnthropicWire()) as cl, FakeUpstream() as oa2:
        yield oa, cl, oa2


def write_config(tmp_path: Path, keys: Keys, oa: str, cl: str, oa2: str) -> Path:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "oa.keys").write_text("# the openai keys\n" + "\n".join(keys.oa_file) + "\n")
    prices = {"inputCostPerToken": 0.000001, "outputCostPerToken": 0.000002}
    config = {
        "providers": {
            "oa": {
                "type": "openai",
                "endpoint": oa,
                "apiKey": "${LEAK_OA_KEY}",
                "apiKeyFile": "secrets/oa.keys",
                "priority": 1,
                "timeout": 5000,
                "models": {OA_MODEL: prices},
            },
            "cl": {
                "type": "claude",
                "endpoint": cl,
                "apiKeys": ["${LEAK_CL_KEY}", keys.cl_literal],
                "priority": 2,
                "timeout": 5000,
                "models": {CL_MODEL: prices},
            },
            "oa2": {
                "type": "openai",
                "endpoint": oa2,
                "keySource": {"type": "env", "variables": ["LEAK_OA2_A", "LEAK_OA2_B"]},
                "priority": 3,
                "timeout": 5000,
                "models": {OA_MODEL: prices},
            },
        },
        "routing": {
            "fallbackChains": [["oa", "cl", "oa2"]],
            "retry": {"maxAttempts": 2, "initialDelay": 1, "maxDelay": 5},
        },
        "monitoring": {"usageLog": {"path": str(tmp_path / "usage.db"), "commitInterval": 20}},
    }
    path = tmp_path / "swarmgate.json"
    path.write_text(json.dumps(config, indent=2))
    return path


async def collect(events: AsyncIterator[StreamEvent], capture: Capture, label: str) -> list[StreamEvent]:
    out = [event async for event in events]
    capture.add(label, [repr(e) for e in out])
    for event in out:
        if isinstance(event, FinishEvent) and event.response is not None:
            capture.add(f"{label}: response", event.response.to_dict())
        if isinstance(event, ErrorEvent):
            capture.error(f"{label}: error event", event.error)
    return out


async def exercise(
    manager: ProviderManager,
    keys: Keys,
    oa: FakeUpstream,
    cl: FakeUpstream,
    oa2: FakeUpstream,
    capture: Capture,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def ask(label: str, **request: Any) -> None:
        try:
            response = await manager.complete(prompt=f"{label}: hello", **request)
        except SwarmgateError as exc:
            capture.error(label, exc)
        else:
            capture.add(label, response.to_dict())
            capture.add(f"{label}: attempts", repr(response.attempts))

    oa_model = f"oa/{OA_MODEL}"
    # Keys in turn, then a 401 that echoes the key: set aside, the next key answers.
    for i in range(3):
        await ask(f"plain {i}", model=oa_model)
    oa.enqueue(echo(401, keys.oa_env))
    await ask("401 then the next key", model=oa_model)
    # A 429 (retried after Retry-After) and two 500s (retried, then failover to cl), keys echoed.
    oa.enqueue(echo(429, keys.oa_file[0], headers={"retry-after-ms": "5"}))
    await ask("429 retried", model=oa_model)
    oa.enqueue(echo(500, keys.oa_file[1]), echo(500, keys.oa_file[0]))
    await ask("500 fails over", model=oa_model)
    # Every cl key rejected: the retry plugin refreshes the credentials (unchanged), then failover to oa2.
    cl.enqueue(echo(401, keys.cl_env), echo(401, keys.cl_literal))
    await ask("all keys rejected", model=f"cl/{CL_MODEL}")
    # Streams: a 401 before the first token; a stream cut after output started; a cl stream on a last-try key.
    oa.enqueue(echo(401, keys.oa_file[1]))
    await collect(manager.stream(prompt="stream 1", model=oa_model), capture, "stream after 401")
    oa2.enqueue(ScriptedReply(content="a long answer that breaks off", cut_after=2))
    await collect(manager.stream(prompt="stream 2", provider="oa2", errors="event"), capture, "stream cut")
    await collect(manager.stream(prompt="stream 3", model=f"cl/{CL_MODEL}"), capture, "cl stream")
    # Errors that reach the caller: a forced provider that keeps failing.
    oa2.enqueue(echo(500, keys.oa2_source[0]), echo(500, keys.oa2_source[1]), echo(500, keys.oa2_source[0]))
    await ask("exhausted", provider="oa2")
    oa2.enqueue(echo(400, keys.oa2_source[1]))
    await ask("invalid request", provider="oa2")
    # Rotation: the env and the key file change and are re-read; explicit keys for oa2; a refresh of cl.
    keys.rotated += [new_key("oarot"), new_key("oafilerot"), new_key("oa2rot")]
    monkeypatch.setenv("LEAK_OA_KEY", keys.rotated[0])
    (tmp_path / "secrets" / "oa.keys").write_text(f"{keys.oa_file[0]}\n{keys.rotated[1]}\n")
    capture.add("rotate oa", await manager.rotate_provider_keys("oa"))
    capture.add("rotate oa2", await manager.rotate_provider_keys("oa2", [keys.rotated[2]]))
    capture.add("refresh cl", await manager.refresh_credentials("cl"))
    monkeypatch.delenv("LEAK_CL_KEY")
    try:
        await manager.rotate_provider_keys("cl")
    except ConfigError as exc:
        capture.error("failed rotation", exc)
    monkeypatch.setenv("LEAK_CL_KEY", keys.cl_env)
    # Old and new keys echoed after the rotation (an old one is still scrubbed).
    oa.enqueue(echo(401, keys.oa_env), echo(401, keys.rotated[0]))
    for i in range(3):
        await ask(f"after rotation {i}", model=oa_model)
    await ask("oa2 after rotation", provider="oa2")
    # What an operator reads.
    for name in manager.providers():
        capture.add(f"key status {name}", manager.provider_key_status(name))
    capture.add("health", {n: attrs.asdict(s) for n, s in (await manager.check_health()).items()})
    capture.add("config to_dict", to_dict(manager.config))
    capture.add("config repr", repr(manager.config))
    capture.add("handles", [repr(manager.handle(n)) for n in manager.providers()])
    capture.add("provider configs", [repr(manager.provider(n).config) for n in manager.providers()])
    if "analytics" in manager.extensions:
        capture.add("analytics", await manager.get_analytics())
        capture.add("metrics", await manager.get_metrics())
        capture.add("recommendations", await manager.get_optimization_recommendations())
        for fmt in ("json", "csv", "prometheus"):
            try:
                capture.add(f"export {fmt}", await manager.export_metrics(fmt))
            except Exception as exc:  # noqa: BLE001 - an exporter that is not installed is named, not leaked
                capture.error(f"export {fmt}", exc)
    usage = manager.extensions.get("usage")
    if usage is not None:
        await usage.flush()
        records = await usage.records()
        assert len(records) >= 15
        capture.add("usage records", [repr(r) for r in records])


async def test_no_key_appears_in_anything_the_run_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    active = ["swarmgate", *(d for d in PLUGINS if installed(d))]
    monkeypatch.setenv(ALLOW_ENV, ",".join(active))
    keys = Keys()
    monkeypatch.setenv("LEAK_OA_KEY", keys.oa_env)
    monkeypatch.setenv("LEAK_CL_KEY", keys.cl_env)
    monkeypatch.setenv("LEAK_OA2_A", keys.oa2_source[0])
    monkeypatch.setenv("LEAK_OA2_B", keys.oa2_source[1])
    capture = Capture()
    with captured_logs() as (events, records):
        async with upstreams() as (oa, cl, oa2):
            path = write_config(tmp_path, keys, oa.url, cl.url, oa2.url)
            async with ProviderManager(str(path)) as manager:
                await exercise(manager, keys, oa, cl, oa2, capture, tmp_path, monkeypatch)
            runner = CliRunner()
            from swarmgate.cli import build_cli

            cli = build_cli()
            for args in (
                ["config", "get", "--config", str(path), "--json"],
                ["config", "get", "providers.cl.apiKeys[1]", "--config", str(path)],
                ["config", "get", "providers", "--config", str(path)],
                ["usage", "tail", "-n", "100", "--json", "--config", str(path)],
            ):
                # In a thread: the commands run their own event loop (anyio.run).
                result = await anyio.to_thread.run_sync(functools.partial(runner.invoke, cli, args))
                capture.add(f"cli {' '.join(args[:3])}", result.output)
                if result.exception is not None and not isinstance(result.exception, SystemExit):
                    capture.error(f"cli {args[:3]}", result.exception)
            upstream_seen = [r.headers for s in (oa, cl, oa2) for r in s.completions]
    out, err = capfd.readouterr()
    capture.add("structlog", events.getvalue())
    capture.add("stdlib logging", records.getvalue())
    capture.add("stdout", out)
    capture.add("stderr", err)
    for name, data in written_files(tmp_path, "usage.db*").items():
        capture.add(f"file {name}", data)

    every = keys.all()
    # The scan is not vacuous: every key reached an upstream, fingerprints were logged,
    # the usage log was written, and the scan itself finds a planted leak.
    sent = json.dumps(upstream_seen)
    unused = [fingerprint(k) for k in every if k not in sent]
    assert not unused, f"keys never used: {unused}"
    logged = events.getvalue()
    assert fingerprint(keys.oa_env) in logged, "a set-aside key is logged by its fingerprint"
    assert '"literal_api_key_in_config"' in logged
    assert "providers.cl.apiKeys[1]" in logged
    if installed("swarmgate-usage"):
        assert any(label.startswith("file usage.db") for label in capture.blobs)
    assert find_secrets({"planted": f"x{keys.cl_literal[3:12]}x"}, every)
    assert_no_secrets(capture.blobs, every)
