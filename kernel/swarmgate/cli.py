"""The CLI core: ``qwen-swarm-enhanced`` (alias ``swarmgate``).

The kernel adds ``plugins list`` and ``test provider NAME``; every other
command comes from plugins
through the ``register_commands`` hook, so installing a plugin adds its
commands. Errors a user can cause (bad config, missing plugin) print one
clear message and exit with status 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import itertools
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from swarmgate.config import SwarmgateConfig, load_config
from swarmgate.config import _read_file as read_config_file
from swarmgate.errors import ConfigError, NoProviderAvailableError, PluginError, SwarmgateError, UnknownModelError
from swarmgate.logs import ensure_redaction
from swarmgate.manager import ProviderManager
from swarmgate.models import CompletionResponse, FinishEvent
from swarmgate.plugins import GROUP, PluginHost, admitted, distribution_of, entry_points

NAMESPACES = (
    GROUP,
    "swarmgate.providers",
    "swarmgate.strategies",
    "swarmgate.balancers",
    "swarmgate.state",
    "swarmgate.exporters",
    "swarmgate.key_sources",
)


class _Group(click.Group):
    """Turns user errors into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, PluginError, SwarmgateError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="swarmgate", prog_name="swarmgate")
def cli() -> None:
    """swarmgate: route LLM requests across providers, with failover."""


@cli.group("plugins")
def plugins_group() -> None:
    """Inspect installed plugins."""


@plugins_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins_list(as_json: bool) -> None:
    """Every installed plugin entry point: group, name, distribution, version, status."""
    rows = []
    for namespace in NAMESPACES:
        for ep in entry_points(namespace):
            dist, version = distribution_of(ep)
            reason = admitted(ep.name, dist)
            rows.append(
                {
                    "group": namespace,
                    "name": ep.name,
                    "distribution": dist,
                    "version": version,
                    "target": ep.value,
                    "status": reason or "enabled",
                }
            )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="swarmgate plugins")
    for column in ("group", "name", "distribution", "version", "target", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c] or "-") for c in ("group", "name", "distribution", "version", "target", "status")))
    Console().print(table)


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SWARMGATE_CONFIG",
    help="Config file (JSON or YAML); default: $SWARMGATE_CONFIG, else the embedded default.",
)

#: Where ``--url`` and ``--admin-key`` are read from when not given.
GATEWAY_URL_ENV = "SWARMGATE_URL"
GATEWAY_ADMIN_KEY_ENV = "SWARMGATE_ADMIN_KEY"

_F = TypeVar("_F", bound=Callable[..., Any])


def gateway_options(func: _F) -> _F:
    """Add ``--url`` (``$SWARMGATE_URL``) and ``--admin-key``
    (``$SWARMGATE_ADMIN_KEY``) to a read command, passed as ``url`` and
    ``admin_key``: with a URL the command asks that running gateway's admin
    API (:func:`gateway_request`) instead of reading the local config and
    usage log, and prints the same table or JSON."""
    func = click.option(
        "--admin-key",
        "admin_key",
        envvar=GATEWAY_ADMIN_KEY_ENV,
        metavar="KEY",
        help=f"The gateway's admin key (default: ${GATEWAY_ADMIN_KEY_ENV}).",
    )(func)
    return click.option(
        "--url",
        "url",
        envvar=GATEWAY_URL_ENV,
        metavar="URL",
        help=f"Ask the gateway running at URL (its admin API) instead of the local files (default: ${GATEWAY_URL_ENV}).",
    )(func)


def gateway_request(
    method: str,
    path: str,
    *,
    url: str,
    admin_key: str | None,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
) -> Any:
    """Call a running gateway's admin API (``swarmgate_server.client``):
    the decoded JSON answer, or the text of a non-JSON one. Raises a
    SwarmgateError (one line, exit 2 in the CLI) when the gateway cannot be
    reached or answers an error, and a PluginError when the server plugin,
    which holds the client, is not installed."""
    try:
        client = importlib.import_module("swarmgate_server.client")
    except ImportError:
        raise PluginError(
            "talking to a running gateway (--url) needs the 'swarmgate-server' distribution: install it "
            "(or 'qwen-swarm-enhanced')",
            namespace=GROUP,
            name="server",
            distribution="swarmgate-server",
        ) from None
    return client.admin_request(method, path, url=url, admin_key=admin_key, params=params, json=json)


def reject_local_options(ctx: click.Context, *names: str) -> None:
    """With ``--url``, refuse options that only make sense locally (``--log``)
    when they were given on the command line (one line, exit 2)."""
    for name in names:
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            option = name.replace("_path", "").replace("_", "-")
            raise click.UsageError(
                f"--{option} reads local files; with --url the gateway answers: give one or the other"
            )


@cli.group("test")
def test_group() -> None:
    """Try things out against the configured providers."""


@test_group.command("provider")
@click.argument("name")
@config_option
@click.option("--model", help="Model to ask (default: the provider's default model).")
@click.option("--prompt", default="Reply with one short sentence: are you there?", show_default=True)
@click.option("--stream/--no-stream", default=False, help="Send the request streamed.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of a table.")
def test_provider(
    name: str, config_path: Path | None, model: str | None, prompt: str, stream: bool, as_json: bool
) -> None:
    """Probe provider NAME's health, then send it one real request.

    Exits 0 when both succeed, 1 when either fails, 2 on a config error.
    """
    result = anyio.run(_test_provider, name, config_path, model, prompt, stream, not as_json)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    sys.exit(0 if result["ok"] else 1)


async def _test_provider(
    name: str, config_path: Path | None, model: str | None, prompt: str, stream: bool, show: bool
) -> dict[str, Any]:
    """Probe, then ask; the result (``ok``, ``health``, ``request``) as a
    JSON-ready dict, printed as a table too when ``show``."""
    console = Console(quiet=not show)
    async with ProviderManager(config_path) as manager:
        if name not in manager.config.providers:
            raise UnknownModelError(f"unknown provider {name!r} (configured: {sorted(manager.config.providers)})")
        if name not in manager.providers():
            raise UnknownModelError(f"provider {name!r} is disabled in the config")
        table = Table(title=f"test provider {name} ({manager.config.providers[name].type})", show_header=False)
        table.add_column("step")
        table.add_column("result")
        result: dict[str, Any] = {"provider": name, "type": manager.config.providers[name].type, "stream": stream}
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True) as progress:
            task = progress.add_task(f"probing {name}'s health", total=None)
            health = (await manager.check_health(name))[name]
            result["health"] = {"healthy": health.healthy, "latency_ms": health.latency, "detail": health.detail}
            table.add_row(
                "health",
                ("[green]healthy[/]" if health.healthy else "[red]unhealthy[/]")
                + f" in {health.latency or 0:.0f} ms"
                + (f": {escape(health.detail)}" if health.detail else ""),
            )
            progress.update(task, description=f"sending one {'streamed ' if stream else ''}request to {name}")
            request = {"prompt": prompt, "provider": name, "model": model or "auto", "max_tokens": 64}
            try:
                response = await _one_request(manager, request, stream)
            except SwarmgateError as error:
                failure = (
                    error.last_error if isinstance(error, NoProviderAvailableError) and error.last_error else error
                )
                table.add_row("request", f"[red]{failure.kind.value}[/]: {escape(failure.message)}")
                console.print(table)
                result["request"] = {"ok": False, "error_kind": failure.kind.value, "error": failure.message}
                result["ok"] = False
                return result
        table.add_row(
            "request",
            f"[green]ok[/] {response.provider}/{response.model} in {response.latency:.0f} ms"
            + (f" (first token {response.ttft:.0f} ms)" if response.ttft is not None else ""),
        )
        table.add_row(
            "tokens",
            f"{response.tokens.input} in, {response.tokens.output} out"
            + (" (estimated)" if response.metadata.get("usage_estimated") else ""),
        )
        table.add_row("cost", f"${response.cost:.6f}")
        table.add_row("answer", escape(response.content[:200]) + ("..." if len(response.content) > 200 else ""))
        console.print(table)
        result["request"] = {
            "ok": True,
            "model": response.model,
            "latency_ms": response.latency,
            "ttft_ms": response.ttft,
            "input_tokens": response.tokens.input,
            "output_tokens": response.tokens.output,
            "cost": response.cost,
            "answer": response.content,
        }
        result["ok"] = health.healthy
        return result


async def _one_request(manager: ProviderManager, request: dict[str, Any], stream: bool) -> CompletionResponse:
    if not stream:
        return await manager.complete(request)
    async for event in manager.stream(request):
        if isinstance(event, FinishEvent) and event.response is not None:
            return event.response
    raise NoProviderAvailableError("the stream ended without a response")


# ---------------------------------------------------------------------------
# config get / set / validate
#
# The file is edited as written: ``${ENV}`` references stay references, other
# keys and their order are kept, YAML comments too when ``ruamel.yaml`` is
# installed (without it the YAML is re-written by PyYAML and a note says the
# comments were dropped). Every edit is validated before it is written: the
# kernel's strict loader, then the plugins' own sections (a ProviderManager is
# built from the edited config and closed again: each plugin parses its
# section in ``plugin_setup``, each provider type its keys).

#: Short names for config paths: the first segment of a key is replaced by its
#: expansion (``budget.daily`` is ``routing.budgetLimits.daily``).
CONFIG_ALIASES: dict[str, str] = {"budget": "routing.budgetLimits"}

#: Keys whose values ``config get`` masks unless they are ``${ENV}`` references.
SECRET_KEYS = frozenset({"apiKey", "apiKeys", "adminKey", "key", "password", "secret", "token", "proxy"})

_Segment = tuple[str | int, bool]  # (key or list index, written quoted/bracketed: exact)
_ENV_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$")


def _config_file(config_path: Path | None) -> Path:
    if config_path is None:
        raise ConfigError([("", "no config file: pass --config PATH or set SWARMGATE_CONFIG")])
    return config_path


def parse_config_key(key: str) -> list[_Segment]:
    """``routing.budgetLimits.daily``, ``routes.fast.targets[0]``,
    ``providers.openai.models["gpt-4.1"].maxTokens`` as segments; aliases
    expanded. Raises ConfigError for a malformed key."""
    segments: list[_Segment] = []
    i, n = 0, len(key)
    expect_name = True
    while i < n:
        char = key[i]
        if char == "[":
            end = key.find("]", i)
            inner = key[i + 1 : end] if end > i else ""
            if end < 0 or not inner:
                raise ConfigError([(key, "malformed key: an unclosed or empty [...]")])
            if inner[0] in "\"'" and inner[-1] == inner[0] and len(inner) >= 2:
                segments.append((inner[1:-1], True))
            elif inner.isdigit():
                segments.append((int(inner), True))
            else:
                raise ConfigError([(key, f"malformed key: [{inner}] is neither a list index nor a quoted name")])
            i = end + 1
            expect_name = False
        elif char == ".":
            if expect_name:
                raise ConfigError([(key, "malformed key: an empty segment")])
            i += 1
            expect_name = True
        elif char in "\"'":
            end = key.find(char, i + 1)
            if end < 0:
                raise ConfigError([(key, "malformed key: an unclosed quote")])
            segments.append((key[i + 1 : end], True))
            i = end + 1
            expect_name = False
        else:
            end = i
            while end < n and key[end] not in ".[":
                end += 1
            segments.append((key[i:end], False))
            i = end
            expect_name = False
    if not segments or expect_name:
        raise ConfigError([(key, "malformed key: an empty segment" if segments else "empty key")])
    head = segments[0]
    if not head[1] and head[0] in CONFIG_ALIASES:
        segments[:1] = [(part, False) for part in CONFIG_ALIASES[str(head[0])].split(".")]
    return segments


def _dotted_path(keys: list[str | int]) -> str:
    out = ""
    for key in keys:
        if isinstance(key, int):
            out += f"[{key}]"
        elif "." in key or not key:
            out += f'["{key}"]'
        else:
            out += f".{key}" if out else key
    return out


def _locate(doc: Any, segments: list[_Segment], *, create: bool) -> tuple[Any, str | int, list[str | int]]:
    """The container holding the value ``segments`` name, the key in it, and
    the concrete path. A plain segment that is not a key of its mapping is
    joined with the following ones when that names a key (a model called
    ``gpt-4.1``). With ``create``, missing mappings on the way are created."""
    node = doc
    path: list[str | int] = []
    i = 0
    while True:
        key, exact = segments[i]
        step = 1
        if isinstance(node, Mapping) and isinstance(key, str) and not exact and key not in node:
            for j in range(len(segments), i + 1, -1):
                parts = segments[i:j]
                if all(isinstance(p, str) and not e for p, e in parts):
                    joined = ".".join(str(p) for p, _ in parts)
                    if joined in node:
                        key, step = joined, j - i
                        break
        last = i + step >= len(segments)
        here = _dotted_path([*path, key])
        if isinstance(node, Mapping):
            if isinstance(key, int):
                raise ConfigError([(here, f"{_dotted_path(path) or 'the top level'} is an object, not a list")])
        elif isinstance(node, list):
            if not isinstance(key, int):
                raise ConfigError([(here, f"{_dotted_path(path) or 'the top level'} is a list: use an index like [0]")])
            if not (0 <= key < len(node) or (create and last and key == len(node))):
                raise ConfigError([(here, f"index out of range: {_dotted_path(path)} has {len(node)} item(s)")])
        else:
            raise ConfigError(
                [(here, f"{_dotted_path(path) or 'the top level'} is {_kind(node)}, not an object or a list")]
            )
        path.append(key)
        if last:
            return node, key, path
        if isinstance(node, Mapping):
            child = node.get(key)
        else:
            assert isinstance(key, int)
            child = node[key] if key < len(node) else None
        if child is None:
            if not create:
                raise ConfigError([(_dotted_path(path), "not set")])
            child = {}
            node[key] = child
        node = child
        i += step


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "null" if value is None else type(value).__name__


def _get_value(doc: Any, segments: list[_Segment]) -> tuple[Any, str]:
    node, key, path = _locate(doc, segments, create=False)
    if isinstance(node, Mapping) and key not in node:
        raise ConfigError([(_dotted_path(path), "not set")])
    return node[key], _dotted_path(path)


def _roundtrip_yaml() -> Any:
    """ruamel.yaml's round-trip loader/dumper, or ``None`` when not installed."""
    try:
        module = importlib.import_module("ruamel.yaml")  # optional: not a dependency of the kernel
    except ImportError:
        return None
    yaml_rt = module.YAML()
    yaml_rt.preserve_quotes = True
    return yaml_rt


def _read_document(path: Path) -> tuple[Any, str]:
    """The file's document as written (no ``${ENV}`` substitution) and its
    format, ``json`` or ``yaml``. A missing file is an empty document."""
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    if not path.exists():
        return {}, "yaml" if is_yaml else "json"
    if not is_yaml:
        return read_config_file(path), "json"
    roundtrip = _roundtrip_yaml()
    if roundtrip is None:
        return read_config_file(path), "yaml"
    try:
        doc = roundtrip.load(path.read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001 - the strict reader names the problem
        read_config_file(path)
        raise ConfigError([("", f"invalid YAML: {exc}")], source=str(path)) from None
    return ({} if doc is None else doc), "yaml"


def _json_indent(path: Path) -> int:
    """The indentation of an existing JSON file (2 when unknown)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return 2
    match = re.search(r"\n( +)\S", text)
    return len(match.group(1)) if match else 2


def _write_document(path: Path, doc: Any, fmt: str) -> bool:
    """Write ``doc`` back atomically (a temporary file renamed over the old
    one, keeping its mode). Returns whether YAML comments were preserved."""
    preserved = True
    if fmt == "json":
        text = json.dumps(doc, indent=_json_indent(path), ensure_ascii=False) + "\n"
    else:
        roundtrip = _roundtrip_yaml()
        if roundtrip is not None:
            if path.exists():
                mapping, sequence, offset = _yaml_indents(path.read_text(encoding="utf-8"))
                roundtrip.indent(mapping=mapping, sequence=sequence, offset=offset)
            buffer = io.StringIO()
            roundtrip.dump(doc, buffer)
            text = buffer.getvalue()
        else:
            preserved = not path.exists() or "#" not in path.read_text(encoding="utf-8")
            text = yaml.safe_dump(_plain(doc), sort_keys=False, allow_unicode=True)
    target = path.resolve()
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        if target.exists():
            shutil.copymode(target, temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return preserved


_YAML_KEY_LINE = re.compile(r"^( *)[^\s#-][^#]*:\s*(#.*)?$")
_YAML_DASH_LINE = re.compile(r"^( *)- ")


def _yaml_indents(text: str) -> tuple[int, int, int]:
    """The indentation a YAML file uses, as ruamel's ``indent(mapping,
    sequence, offset)``, so that a round trip does not re-indent it: the
    first nested key's indentation, and where the dashes of the first block
    list sit under their key (2, 2, 0 when unknown)."""
    mapping = sequence = 2
    offset = 0
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    nested = [len(line) - len(line.lstrip(" ")) for line in lines if not line.lstrip().startswith("-")]
    nested = [n for n in nested if n > 0]
    if nested:
        mapping = min(nested)
    for before, line in itertools.pairwise(lines):
        dash, key = _YAML_DASH_LINE.match(line), _YAML_KEY_LINE.match(before)
        if dash and key:
            offset = max(len(dash.group(1)) - len(key.group(1)), 0)
            sequence = offset + 2
            break
    return mapping, sequence, offset


def _plain(value: Any) -> Any:
    """Plain dicts, lists and scalars (ruamel's commented containers, YAML
    dates as ISO strings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bool):  # before int: bool is an int; subclasses (ruamel's scalars) become plain
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if value is None:
        return None
    return str(value)


def parse_config_value(text: str) -> Any:
    """VALUE as JSON when it parses (numbers, true/false, null, lists,
    objects, "quoted strings"), else the text itself. ``NaN`` and
    ``Infinity`` stay strings."""

    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        return json.loads(text, parse_constant=refuse)
    except ValueError:
        return text


class _LenientEnv(Mapping[str, str]):
    """The environment, where an unset ``${NAME}`` stays the text ``${NAME}``
    (editing a config on a machine without the gateway's secrets)."""

    def __getitem__(self, name: str) -> str:
        return os.environ.get(name, "${" + name + "}")

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)


def check_config(
    doc: Any, *, plugins: bool = True, strict_env: bool = True
) -> tuple[list[tuple[str, str]], str | None]:
    """Validate a config document: the kernel's strict loader, then (with
    ``plugins``) the plugins' sections by building a ProviderManager from it
    and closing it at once. Returns the problems, ``(path, message)`` each,
    and a warning when the plugin check could not run for another reason (a
    state backend that cannot be reached, say). With ``strict_env`` false an
    unset ``${NAME}`` is not a problem."""
    env: Mapping[str, str] = os.environ if strict_env else _LenientEnv()
    try:
        config = load_config(_plain(doc), env=env)
    except ConfigError as exc:
        return list(exc.problems), None
    if not plugins:
        return [], None
    return anyio.run(_check_plugins, config)


async def _check_plugins(config: SwarmgateConfig) -> tuple[list[tuple[str, str]], str | None]:
    manager = ProviderManager(config)
    try:
        await manager.initialize()  # closes itself again when a plugin refuses its section
    except ConfigError as exc:
        return list(exc.problems), None
    except PluginError as exc:
        where, _, problem = str(exc).partition(": ")  # "providers.x.type: unknown provider type ..."
        if problem and re.fullmatch(r"[\w.\[\]\"-]+", where):
            return [(where, problem)], None
        return [("", str(exc))], None
    except Exception as exc:  # noqa: BLE001 - not the config's fault: say so, do not refuse the edit
        return [], f"the plugins' sections could not be checked: {type(exc).__name__}: {exc}"
    await manager.aclose()
    return [], None


def _mask(value: Any, key: str | int | None = None) -> Any:
    if isinstance(value, Mapping):
        return {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]  # apiKeys: every item is a secret
    if key in SECRET_KEYS and isinstance(value, str) and value and not _ENV_REF.match(value):
        return "***"
    return value


@cli.group("config")
def config_group() -> None:
    """Read, change and validate the config file (--config or $SWARMGATE_CONFIG).

    Keys are dotted camelCase paths (routing.budgetLimits.daily); list items
    by index (routes.fast.targets[0]); names with dots quoted
    (providers.openai.models["gpt-4.1"].maxTokens). Aliases: budget.daily and
    budget.monthly mean routing.budgetLimits.daily and .monthly."""


@config_group.command("get")
@click.argument("key", required=False)
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the value as JSON.")
def config_get(key: str | None, config_path: Path | None, as_json: bool) -> None:
    """Print the value at KEY (the whole file without KEY), as written in the
    file (${ENV} references unexpanded; secrets masked)."""
    path = _config_file(config_path)
    doc, _ = _read_document(path)
    if key is None:
        value, where = doc, ""
    else:
        try:
            value, where = _get_value(doc, parse_config_key(key))
        except ConfigError as exc:
            raise ConfigError(exc.problems, source=str(path)) from None
    value = _mask(_plain(value), re.sub(r"(\[\d+\])+$", "", where.rsplit(".", 1)[-1]) if where else None)
    if as_json:
        click.echo(json.dumps(value, indent=2, ensure_ascii=False))
    elif isinstance(value, dict | list):
        click.echo(yaml.safe_dump(value, sort_keys=False, allow_unicode=True).rstrip("\n"))
    elif isinstance(value, str):
        click.echo(value)
    else:
        click.echo(json.dumps(value))


@config_group.command("set", context_settings={"ignore_unknown_options": True})  # VALUE may be -5
@click.argument("key")
@click.argument("value")
@config_option
@click.option(
    "--no-plugins", is_flag=True, help="Check with the kernel's strict loader only, not the plugins' sections."
)
def config_set(key: str, value: str, config_path: Path | None, no_plugins: bool) -> None:
    """Set KEY to VALUE in the config file, after checking the edited config.

    VALUE is read as JSON when it parses (50.0, true, [0.5, 0.8], null,
    {"daily": 5}), else as a string. A value the config refuses prints one
    line naming its path and exits 2; the file is left untouched. Unset
    ${ENV} references elsewhere in the file are not held against the edit.
    """
    path = _config_file(config_path)
    parsed = parse_config_value(value)
    try:
        doc, fmt, where = _edit(path, key, parsed)
    except ConfigError as exc:
        (bad, problem), *_ = exc.problems
        click.echo(f"error: {bad}: {problem}; {path} left unchanged", err=True)
        sys.exit(2)
    problems, warning = check_config(doc, plugins=not no_plugins, strict_env=False)
    if problems:
        # The problems of the edited value first; else the first one on its way; else any.
        mine = [p for p in problems if p[0] == where or p[0].startswith((where + ".", where + "["))]
        mine = mine or [p for p in problems if p[0] and where.startswith(p[0])] or problems
        (bad, problem), rest = mine[0], len(problems) - 1
        more = f" (and {rest} more problem{'s' if rest > 1 else ''})" if rest else ""
        click.echo(f"error: {bad or where}: {problem}{more}; {path} left unchanged", err=True)
        sys.exit(2)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    try:
        preserved = _write_document(path, doc, fmt)
    except OSError as exc:
        click.echo(f"error: cannot write {path}: {exc.strerror or exc}", err=True)
        sys.exit(2)
    if not preserved:
        click.echo(f"note: {path} was re-written without its comments (install ruamel.yaml to keep them)", err=True)
    click.echo(f"{where} = {json.dumps(parsed, ensure_ascii=False)} ({path})")


def _edit(path: Path, key: str, value: Any) -> tuple[Any, str, str]:
    """The file's document with ``key`` set to ``value``, its format, and
    the concrete path set. Raises ConfigError naming a bad key or path."""
    segments = parse_config_key(key)
    doc, fmt = _read_document(path)
    node, last, concrete = _locate(doc, segments, create=True)
    if isinstance(node, list) and last == len(node):
        node.append(value)
    else:
        node[last] = value
    return doc, fmt, _dotted_path(concrete)


@config_group.command("validate")
@config_option
@click.option("--ignore-env", is_flag=True, help="Do not count unset ${ENV} references as problems.")
@click.option(
    "--no-plugins", is_flag=True, help="Check with the kernel's strict loader only, not the plugins' sections."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def config_validate(config_path: Path | None, ignore_env: bool, no_plugins: bool, as_json: bool) -> None:
    """Check the config file as the gateway would at start-up: the kernel's
    strict loader (types, unknown keys, references, ${ENV} set), then every
    installed plugin's own section and every provider type's keys (the
    plugins are started and stopped as at start-up, without serving: they
    may create their data files; --no-plugins skips this).

    Exits 0 when valid, 2 listing every problem otherwise."""
    path = _config_file(config_path)
    doc, _ = _read_document(path)
    problems, warning = check_config(doc, plugins=not no_plugins, strict_env=not ignore_env)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "file": str(path),
                    "valid": not problems,
                    "problems": [{"path": p, "message": m} for p, m in problems],
                    "warning": warning,
                },
                indent=2,
            )
        )
        if problems:
            sys.exit(2)
        return
    if warning:
        click.echo(f"warning: {warning}", err=True)
    if problems:
        raise ConfigError(problems, source=str(path))
    click.echo(f"ok: {path} is valid")


def build_cli() -> click.Group:
    """The CLI with every admitted plugin's commands registered."""
    ensure_redaction()
    host = PluginHost()
    host.load()
    host.register_commands(cli)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        group = build_cli()
    except PluginError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    group.main(args=argv, prog_name="qwen-swarm-enhanced")
