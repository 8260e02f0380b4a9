"""LiteLLM proxy config (``config.yaml``) → swarmgate config.

The mapping, section by section (LiteLLM's durations are seconds, ours
milliseconds):

``model_list``
    Each deployment (``model_name`` + ``litellm_params``) becomes a target
    ``provider/model``. Deployments that share the provider-level settings
    (type, endpoint, key, limits, weight, order, timeouts) share one
    provider, whose ``models`` then hold each upstream model. The LiteLLM
    provider prefix picks the type (``openai/``, ``azure/`` → ``openai``;
    ``anthropic/`` → ``claude``; ``dashscope/`` → ``qwen``; ``ollama/``,
    ``hosted_vllm/``, ``lm_studio/`` → ``local``; OpenAI-compatible hosted
    APIs such as ``groq/`` or ``gemini/`` → ``openai`` with their endpoint).
    ``api_key``/``api_base`` → ``apiKey``/``endpoint`` (``os.environ/VAR`` →
    ``${VAR}``; an absent key → LiteLLM's default variable for that provider),
    ``rpm``/``tpm`` → ``rateLimit``, ``weight`` → ``weight``, ``order`` →
    ``priority``, ``timeout`` → ``timeout``, ``stream_timeout`` →
    ``timeouts.firstToken``, ``region_name`` → ``region``, ``max_budget`` +
    ``budget_duration`` → ``budget``; prices (``input_cost_per_token``,
    ``output_cost_per_token`` in ``model_info`` or ``litellm_params``),
    ``max_tokens`` and ``max_input_tokens`` → the model's
    ``inputCostPerToken``, ``outputCostPerToken``, ``maxTokens``,
    ``contextWindow``.
``model_name`` (model groups)
    A group becomes the route of that name: its deployments are the route's
    targets (the balancer spreads the load over them, by weight when the
    deployments have one), and its fallbacks the route's ``fallbacks``. A
    group of one deployment whose name is the upstream model's, without
    fallbacks, needs no route: the name is a model of its provider.
``router_settings``
    ``routing_strategy`` → ``routing.strategy`` / ``routing.loadBalancing``
    (see :data:`STRATEGIES`); ``num_retries``, ``retry_after``,
    ``retry_policy`` → ``optimization.retry``; ``allowed_fails``,
    ``cooldown_time`` → ``routing.circuitBreaker``; ``timeout``,
    ``stream_timeout`` → each provider's; ``fallbacks``,
    ``context_window_fallbacks``, ``default_fallbacks`` → routes' fallbacks;
    ``model_group_alias`` → more routes; ``redis_*`` → ``state`` (Redis).
``litellm_settings``
    ``cache``/``cache_params`` → ``optimization.caching`` (and ``state`` for
    a Redis cache); ``num_retries``, ``request_timeout``, the fallbacks as
    in ``router_settings``; ``max_budget`` + ``budget_duration`` →
    ``routing.budgetLimits``.
``general_settings``
    ``master_key`` → ``server.adminKey`` and a caller key (a literal key is
    written as its ``sha256:`` digest).

Everything without an equivalent is left out with a :class:`Note` saying so.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from swarmgate_migrate.model import Migration, MigrationError, Note

# -- provider kinds -------------------------------------------------------------


@attrs.frozen
class Kind:
    """How a LiteLLM provider prefix maps to a swarmgate provider type."""

    #: Our provider type.
    type: str
    #: The provider's name in the output (made unique when needed).
    base: str
    #: The endpoint when ``api_base`` is absent (``None``: the type's default).
    endpoint: str | None = None
    #: The variable LiteLLM reads the key from when ``api_key`` is absent.
    key_env: str | None = None
    #: More provider keys of our type.
    extra: Mapping[str, Any] = attrs.field(factory=dict)
    #: ``api_base`` is required (no public endpoint).
    needs_base: bool = False


#: LiteLLM provider prefix → our provider type. Hosted OpenAI-compatible APIs
#: keep LiteLLM's default endpoint and key variable.
KINDS: Final[Mapping[str, Kind]] = {
    "openai": Kind("openai", "openai", key_env="OPENAI_API_KEY"),
    "custom_openai": Kind("openai", "openai", needs_base=True),
    "azure": Kind("openai", "azure", key_env="AZURE_API_KEY", needs_base=True),
    "azure_ai": Kind("openai", "azure-ai", key_env="AZURE_AI_API_KEY", needs_base=True),
    "anthropic": Kind("claude", "anthropic", key_env="ANTHROPIC_API_KEY"),
    "dashscope": Kind(
        "qwen",
        "qwen",
        endpoint="https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        key_env="DASHSCOPE_API_KEY",
        extra={"mode": "openai-compatible"},
    ),
    "ollama": Kind("local", "ollama", endpoint="http://localhost:11434"),
    "ollama_chat": Kind("local", "ollama", endpoint="http://localhost:11434"),
    "hosted_vllm": Kind("local", "vllm", extra={"api": "openai"}, needs_base=True),
    "vllm": Kind("local", "vllm", extra={"api": "openai"}, needs_base=True),
    "lm_studio": Kind("local", "lmstudio", endpoint="http://localhost:1234/v1", extra={"api": "openai"}),
    "llamafile": Kind("local", "llamafile", endpoint="http://127.0.0.1:8080/v1", extra={"api": "openai"}),
    "groq": Kind("openai", "groq", endpoint="https://api.groq.com/openai/v1", key_env="GROQ_API_KEY"),
    "deepseek": Kind("openai", "deepseek", endpoint="https://api.deepseek.com/v1", key_env="DEEPSEEK_API_KEY"),
    "mistral": Kind("openai", "mistral", endpoint="https://api.mistral.ai/v1", key_env="MISTRAL_API_KEY"),
    "together_ai": Kind("openai", "together", endpoint="https://api.together.xyz/v1", key_env="TOGETHERAI_API_KEY"),
    "openrouter": Kind("openai", "openrouter", endpoint="https://openrouter.ai/api/v1", key_env="OPENROUTER_API_KEY"),
    "fireworks_ai": Kind(
        "openai", "fireworks", endpoint="https://api.fireworks.ai/inference/v1", key_env="FIREWORKS_AI_API_KEY"
    ),
    "perplexity": Kind("openai", "perplexity", endpoint="https://api.perplexity.ai", key_env="PERPLEXITYAI_API_KEY"),
    "xai": Kind("openai", "xai", endpoint="https://api.x.ai/v1", key_env="XAI_API_KEY"),
    "gemini": Kind(
        "openai",
        "gemini",
        endpoint="https://generativelanguage.googleapis.com/v1beta/openai",
        key_env="GEMINI_API_KEY",
    ),
    "deepinfra": Kind(
        "openai", "deepinfra", endpoint="https://api.deepinfra.com/v1/openai", key_env="DEEPINFRA_API_KEY"
    ),
}

#: LiteLLM providers with their own authentication or wire format and no
#: swarmgate provider type: their deployments are left out.
UNSUPPORTED: Final = frozenset(
    {
        "bedrock",
        "bedrock_converse",
        "sagemaker",
        "sagemaker_chat",
        "vertex_ai",
        "vertex_ai_beta",
        "cohere",
        "cohere_chat",
        "huggingface",
        "replicate",
        "watsonx",
        "ai21",
        "ai21_chat",
        "cloudflare",
        "databricks",
        "predibase",
        "nlp_cloud",
        "aleph_alpha",
        "petals",
        "palm",
        "clarifai",
        "triton",
        "baseten",
        "text-completion-openai",
        "text-completion-codestral",
        "codestral",
        "voyage",
        "jina_ai",
        "snowflake",
        "oci",
    }
)

#: Upstream model names LiteLLM sends to a provider without a prefix.
_INFERRED: Final = (
    (re.compile(r"^(gpt-|o1|o3|o4|chatgpt-|ft:gpt|davinci|babbage)"), "openai"),
    (re.compile(r"^claude"), "anthropic"),
    (re.compile(r"^qwen"), "dashscope"),
)

#: ``model_info.mode`` values that are not chat completions.
_NOT_CHAT: Final = frozenset(
    {
        "embedding",
        "image_generation",
        "image_edit",
        "audio_transcription",
        "audio_speech",
        "moderation",
        "rerank",
        "batch",
        "video_generation",
        "realtime",
    }
)

#: ``routing_strategy`` → (our ``routing.strategy``, our balancer or ``None``
#: for "by the deployments' weights", what differs).
STRATEGIES: Final[Mapping[str, tuple[str, str | None, str | None]]] = {
    "simple-shuffle": ("priority", None, None),
    "least-busy": ("priority", "least-outstanding", None),
    "latency-based-routing": (
        "performance-optimized",
        "round-robin",
        "swarmgate ranks targets by predicted latency (p50 and p95 learned per target); "
        "deployments within 'tolerance' of the fastest share the traffic",
    ),
    "cost-based-routing": ("cost-optimized", "round-robin", None),
    "usage-based-routing": (
        "priority",
        "weighted-round-robin",
        "swarmgate spreads the traffic by the deployments' tpm (else rpm) as weights and routes around a "
        "deployment at its rateLimit, instead of picking the one with the lowest usage this minute",
    ),
    "usage-based-routing-v2": (
        "priority",
        "weighted-round-robin",
        "swarmgate spreads the traffic by the deployments' tpm (else rpm) as weights and routes around a "
        "deployment at its rateLimit, instead of picking the one with the lowest usage this minute",
    ),
}

#: ``retry_policy`` keys and our error names.
_RETRY_POLICY: Final = {
    "RateLimitErrorRetries": "rate_limit",
    "TimeoutErrorRetries": "timeout",
    "InternalServerErrorRetries": "temporary_error",
}
#: ``retry_policy`` keys for errors swarmgate never retries on the same target.
_NEVER_RETRIED: Final = frozenset(
    {
        "AuthenticationErrorRetries",
        "BadRequestErrorRetries",
        "ContentPolicyViolationErrorRetries",
        "NotFoundErrorRetries",
    }
)

# Keys read without a note (they say nothing swarmgate has to do differently).
_QUIET_PARAMS: Final = frozenset({"model", "custom_llm_provider", "mock_response"})
_QUIET_INFO: Final = frozenset(
    {"id", "mode", "base_model", "description", "db_model", "team_id", "litellm_provider", "tier"}
)
_QUIET_LITELLM: Final = frozenset({"set_verbose", "json_logs", "drop_params", "telemetry", "turn_off_message_logging"})
_QUIET_ROUTER: Final = frozenset({"routing_strategy_args", "enable_pre_call_checks"})

_ENV_REF: Final = re.compile(r"^os\.environ/([A-Za-z_][A-Za-z0-9_]*)$")
_NAME_CHARS: Final = re.compile(r"[^a-z0-9-]+")

SECONDS_PER_DAY: Final = 86_400.0

# -- helpers --------------------------------------------------------------------


def env_refs(node: Any) -> Any:
    """``node`` with every string ``os.environ/NAME`` replaced by ``${NAME}``."""
    if isinstance(node, Mapping):
        return {k: env_refs(v) for k, v in node.items()}
    if isinstance(node, list):
        return [env_refs(v) for v in node]
    if isinstance(node, str):
        match = _ENV_REF.match(node.strip())
        return "${" + match.group(1) + "}" if match else node
    return node


def _is_env(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${") and value.endswith("}")


def _number(value: Any) -> float | None:
    """A finite number (numeric strings too: YAML may quote them), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            return None
        return parsed if math.isfinite(parsed) else None
    return None


def _ms(seconds: float) -> float | int:
    """Seconds as milliseconds, an int when whole."""
    value = seconds * 1000.0
    return int(value) if value.is_integer() else value


def _whole(value: float) -> float | int:
    return int(value) if value.is_integer() else value


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def _duration_seconds(text: Any) -> float | None:
    """LiteLLM's budget durations (``30s``, ``30m``, ``1h``, ``1d``, ``1mo``) in seconds."""
    if not isinstance(text, str):
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|mo)\s*", text)
    if match is None:
        return None
    unit = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": SECONDS_PER_DAY, "mo": 30 * SECONDS_PER_DAY}[match.group(2)]
    return float(match.group(1)) * unit


def _budget_period(duration: Any) -> str | None:
    """``daily`` or ``monthly`` for a duration of one day or one month."""
    seconds = _duration_seconds(duration)
    if seconds is None:
        return None
    if seconds == SECONDS_PER_DAY:
        return "daily"
    if 28 * SECONDS_PER_DAY <= seconds <= 31 * SECONDS_PER_DAY:
        return "monthly"
    return None


def _host_label(url: str | None) -> str | None:
    """A short name for an endpoint: the first label of its host name, or
    ``local`` for loopback; ``None`` for an ``${ENV}`` endpoint."""
    if not url or "${" in url:
        return None
    host = urlsplit(url if "://" in url else "http://" + url).hostname
    if not host:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return "local"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        label = host.split(".")[0]
        if label in ("api", "www") and host.count(".") >= 2:
            label = host.split(".")[1]
        return _NAME_CHARS.sub("-", label.lower()).strip("-") or None
    return "local" if address.is_loopback or address.is_unspecified else None


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + path


# -- the converter ------------------------------------------------------------------


@attrs.define
class _Provider:
    """A provider being built: its settings and models."""

    name: str
    settings: dict[str, Any]
    models: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    litellm_provider: str = ""
    kind: Kind | None = None


@attrs.define
class _Deployment:
    path: str
    group: str
    provider: str
    model: str
    order: int | None


class _Converter:
    """One conversion: the notes gathered on the way and the output built."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc
        self.notes: list[Note] = []
        self.providers: dict[str, _Provider] = {}
        self.deployments: list[_Deployment] = []
        self.groups: dict[str, list[str]] = {}  # group -> targets, in file order
        self.dropped_groups: set[str] = set()
        self.reserved: set[str] = set()
        self.out: dict[str, Any] = {}
        router = doc.get("router_settings")
        litellm = doc.get("litellm_settings")
        general = doc.get("general_settings")
        self.router: Mapping[str, Any] = self._section(router, "router_settings")
        self.litellm: Mapping[str, Any] = self._section(litellm, "litellm_settings")
        self.general: Mapping[str, Any] = self._section(general, "general_settings")
        strategy = self.router.get("routing_strategy", "simple-shuffle")
        self.strategy = strategy if isinstance(strategy, str) else "simple-shuffle"

    def note(self, path: str, message: str) -> None:
        self.notes.append(Note(path, message))

    @staticmethod
    def _section(value: Any, path: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise MigrationError([(path, f"expected a mapping, got {type(value).__name__}")])
        return value

    def setting(self, key: str) -> tuple[Any, str] | None:
        """A key read from ``router_settings``, else ``litellm_settings``: its value and path."""
        if key in self.router:
            return self.router[key], f"router_settings.{key}"
        if key in self.litellm:
            return self.litellm[key], f"litellm_settings.{key}"
        return None

    # -- the whole file -------------------------------------------------------------

    def run(self) -> Migration:
        known = {"model_list", "router_settings", "litellm_settings", "general_settings", "environment_variables"}
        for key in self.doc:
            if key not in known:
                self.note(str(key), "not a LiteLLM proxy section swarmgate knows; ignored")
        self.models()
        routing = self.routing()
        routes = self.routes()
        self.retries()
        self.breaker(routing)
        self.caching()
        self.budgets(routing)
        self.server()
        self.environment()
        self.leftovers()
        providers = {name: self.render_provider(p) for name, p in self.providers.items()}
        out: dict[str, Any] = {"providers": providers}
        if routing:
            out["routing"] = routing
        if routes:
            out["routes"] = routes
        for key in ("optimization", "server", "state"):
            if key in self.out:
                out[key] = self.out[key]
        return Migration(
            config=out,
            notes=tuple(self.notes),
            deployments=len(self.deployments),
            groups=len(self.groups),
        )

    # -- model_list -----------------------------------------------------------------

    def models(self) -> None:
        entries = self.doc.get("model_list")
        if entries is None:
            raise MigrationError([("model_list", "missing: a LiteLLM proxy config lists its deployments there")])
        if not isinstance(entries, list):
            raise MigrationError([("model_list", f"expected a list, got {type(entries).__name__}")])
        reserved = {e.get("model_name") for e in entries if isinstance(e, Mapping)}
        self.reserved = {str(name) for name in reserved if isinstance(name, str)}
        for i, entry in enumerate(entries):
            self.deployment(f"model_list[{i}]", entry)
        if not self.deployments:
            self.note("model_list", "no deployment could be converted: the config has no provider")
        self.rename()

    def rename(self) -> None:
        """Name the providers of one kind after their endpoints' hosts when
        there are several and every host gives a distinct name
        (``azure-contoso-eastus``, ``azure-contoso-canada``), instead of
        ``azure``, ``azure-2``."""
        by_base: dict[str, list[_Provider]] = {}
        for provider in self.providers.values():
            if provider.kind is not None:
                by_base.setdefault(provider.kind.base, []).append(provider)
        renames: dict[str, str] = {}
        for base, providers in by_base.items():
            if len(providers) < 2:
                continue
            labels = [_host_label(p.settings.get("endpoint")) for p in providers]
            names = [f"{base}-{label}" if label and label != base else None for label in labels]
            others = (set(self.providers) - {p.name for p in providers}) | self.reserved
            if all(names) and len(set(names)) == len(names) and not set(names) & others:
                renames.update({p.name: str(n) for p, n in zip(providers, names, strict=True)})
        if not renames:
            return
        self.providers = {renames.get(n, n): p for n, p in self.providers.items()}
        for name, provider in self.providers.items():
            provider.name = name
        for group, targets in self.groups.items():
            self.groups[group] = [
                renames.get(t.split("/", 1)[0], t.split("/", 1)[0]) + "/" + t.split("/", 1)[1] for t in targets
            ]
        for deployment in self.deployments:
            deployment.provider = renames.get(deployment.provider, deployment.provider)

    def deployment(self, path: str, entry: Any) -> None:
        if not isinstance(entry, Mapping):
            raise MigrationError([(path, f"expected a mapping, got {type(entry).__name__}")])
        group = entry.get("model_name")
        params = entry.get("litellm_params")
        if not isinstance(group, str) or not group:
            raise MigrationError([(f"{path}.model_name", "required: the model group's name")])
        if not isinstance(params, Mapping) or not isinstance(params.get("model"), str):
            raise MigrationError([(f"{path}.litellm_params.model", "required: the model LiteLLM calls")])
        info = entry.get("model_info") or {}
        if not isinstance(info, Mapping):
            raise MigrationError([(f"{path}.model_info", f"expected a mapping, got {type(info).__name__}")])
        for key in entry:
            if key not in ("model_name", "litellm_params", "model_info", "rpm", "tpm"):
                self.note(f"{path}.{key}", "no swarmgate equivalent; ignored")
        mode = info.get("mode")
        if isinstance(mode, str) and mode in _NOT_CHAT:
            self.note(path, f"{mode} deployment: swarmgate routes chat completions only; left out")
            self.dropped_groups.add(group)
            return
        model: str = params["model"]
        prefix, upstream = self.split_model(params, model)
        if prefix is None:
            self.note(
                f"{path}.litellm_params.model",
                f"cannot tell the provider of {model!r} (no LiteLLM prefix such as 'openai/' and no api_base); "
                "left out",
            )
            self.dropped_groups.add(group)
            return
        kind = KINDS.get(prefix)
        api_base = params.get("api_base")
        if kind is None:
            if prefix in UNSUPPORTED or not isinstance(api_base, str):
                self.note(
                    f"{path}.litellm_params.model",
                    f"no swarmgate provider type for LiteLLM provider {prefix!r}; deployment {model!r} left out "
                    "(an OpenAI-compatible endpoint works as type 'openai' with its endpoint)",
                )
                self.dropped_groups.add(group)
                return
            self.note(
                f"{path}.litellm_params.model",
                f"LiteLLM provider {prefix!r} is not known to swarmgate: converted as an OpenAI-compatible "
                f"endpoint (type 'openai' at {api_base})",
            )
            kind = Kind("openai", _NAME_CHARS.sub("-", prefix.lower()).strip("-") or "openai")
        if kind.needs_base and not isinstance(api_base, str):
            self.note(
                f"{path}.litellm_params.api_base",
                f"required for LiteLLM provider {prefix!r} (no public endpoint); deployment {model!r} left out",
            )
            self.dropped_groups.add(group)
            return
        settings = self.provider_settings(path, prefix, kind, params, entry)
        model_key = upstream if upstream != "*" else None
        hosted = kind.type != "local"
        model_settings = self.model_settings(path, params, info, hosted=hosted) if model_key is not None else {}
        if model_key is None:
            self.note(
                f"{path}.litellm_params.model",
                "a wildcard deployment: its provider is a pass-through (no 'models': any model name is sent "
                "upstream as asked)",
            )
        provider = self.place(kind, prefix, settings, model_key, model_settings)
        if model_key is None:
            self.groups.setdefault(group, [])
            return
        target = f"{provider.name}/{model_key}"
        targets = self.groups.setdefault(group, [])
        if target in targets:
            self.note(path, f"the same deployment as an earlier one of group {group!r} ({target}); merged")
        else:
            targets.append(target)
        order = _number(params.get("order"))
        self.deployments.append(_Deployment(path, group, provider.name, model_key, int(order) if order else None))

    def split_model(self, params: Mapping[str, Any], model: str) -> tuple[str | None, str]:
        """The LiteLLM provider of a deployment and the upstream model name."""
        custom = params.get("custom_llm_provider")
        if isinstance(custom, str) and custom:
            return custom, model
        head, sep, rest = model.partition("/")
        if sep and (head in KINDS or head in UNSUPPORTED):
            return head, rest
        for pattern, prefix in _INFERRED:
            if pattern.match(model):
                return prefix, model
        if sep and isinstance(params.get("api_base"), str):
            return head, rest
        if isinstance(params.get("api_base"), str):
            return "openai", model
        return None, model

    def provider_settings(
        self, path: str, prefix: str, kind: Kind, params: Mapping[str, Any], entry: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The provider-level keys of one deployment (what decides which
        deployments may share a provider)."""
        where = f"{path}.litellm_params"
        settings: dict[str, Any] = {"type": kind.type, **kind.extra}
        api_base = params.get("api_base")
        endpoint = api_base if isinstance(api_base, str) else kind.endpoint
        if prefix in ("azure", "azure_ai") and isinstance(endpoint, str):
            if prefix == "azure" and not endpoint.rstrip("/").endswith("/openai/v1"):
                endpoint = _join(endpoint, "/openai/v1")
            version = params.get("api_version")
            self.note(
                f"{where}.api_version" if version is not None else f"{where}.model",
                "Azure OpenAI is called through its OpenAI-compatible v1 API ("
                f"{endpoint}), where the deployment name is the model"
                + ("; api_version is not needed and was dropped" if version is not None else ""),
            )
        if endpoint is not None:
            settings["endpoint"] = endpoint
        api_key = params.get("api_key")
        if isinstance(api_key, str) and api_key:
            settings["apiKey"] = api_key
            if not _is_env(api_key):
                self.note(
                    f"{where}.api_key",
                    "a literal API key, copied as is: better move it to an environment variable "
                    "(os.environ/NAME in LiteLLM, ${NAME} in swarmgate)",
                )
        elif kind.key_env is not None and not (prefix == "openai" and isinstance(api_base, str)):
            settings["apiKey"] = "${" + kind.key_env + "}"
        elif kind.type == "qwen":
            settings["apiKey"] = "${DASHSCOPE_API_KEY}"
        organization = params.get("organization")
        if isinstance(organization, str) and kind.type == "openai":
            settings["organization"] = organization
        headers = params.get("extra_headers", params.get("headers"))
        if isinstance(headers, Mapping) and headers:
            settings["headers"] = {str(k): str(v) for k, v in headers.items()}
        timeout = _number(params.get("timeout"))
        if timeout is None:
            found = self.setting("timeout") or (
                (self.litellm["request_timeout"], "litellm_settings.request_timeout")
                if "request_timeout" in self.litellm
                else None
            )
            timeout = _number(found[0]) if found else None
        if timeout is not None and timeout > 0:
            settings["timeout"] = _ms(timeout)
        stream_timeout = _number(params.get("stream_timeout"))
        if stream_timeout is None:
            found = self.setting("stream_timeout")
            stream_timeout = _number(found[0]) if found else None
        if stream_timeout is not None and stream_timeout > 0:
            settings["timeouts"] = {"firstToken": _ms(stream_timeout)}
        rate: dict[str, Any] = {}
        rpm = _number(params.get("rpm", entry.get("rpm")))
        tpm = _number(params.get("tpm", entry.get("tpm")))
        if rpm is not None and rpm > 0:
            rate["requestsPerMinute"] = _whole(rpm)
        if tpm is not None and tpm > 0:
            rate["tokensPerMinute"] = _whole(tpm)
        if rate:
            settings["rateLimit"] = rate
        weight = self.weight_of(params, rpm, tpm)
        if weight is not None:
            settings["weight"] = _whole(weight)
        order = _number(params.get("order"))
        if order is not None:
            settings["priority"] = int(order)
        region = params.get("region_name")
        if isinstance(region, str) and region:
            settings["region"] = region
        budget = _number(params.get("max_budget"))
        if budget is not None:
            period = _budget_period(params.get("budget_duration"))
            if period is None:
                self.note(
                    f"{where}.budget_duration",
                    f"swarmgate budgets are daily or monthly; {params.get('budget_duration')!r} has no equivalent: "
                    "the deployment's max_budget was left out",
                )
            else:
                settings["budget"] = {period: _whole(budget)}
        ignored = {
            "api_version": prefix in ("azure", "azure_ai"),
            "max_parallel_requests": False,
            "input_cost_per_token": True,
            "output_cost_per_token": True,
            "max_tokens": True,
            "temperature": True,
            "api_key": True,
            "api_base": True,
            "organization": kind.type == "openai",
            "extra_headers": True,
            "headers": True,
            "timeout": True,
            "stream_timeout": True,
            "rpm": True,
            "tpm": True,
            "weight": self.strategy == "simple-shuffle" or self.strategy.startswith("usage-based-routing"),
            "order": True,
            "region_name": True,
            "max_budget": True,
            "budget_duration": True,
        }
        for key in params:
            if key in _QUIET_PARAMS or ignored.get(key, False):
                continue
            if key == "weight":
                self.note(
                    f"{where}.weight",
                    f"LiteLLM weighs deployments under simple-shuffle only; ignored under {self.strategy}",
                )
                continue
            self.note(f"{where}.{key}", "no swarmgate equivalent; ignored")
        return settings

    def weight_of(self, params: Mapping[str, Any], rpm: float | None, tpm: float | None) -> float | None:
        """The deployment's load-balancing weight: ``weight``; under
        simple-shuffle else ``rpm``, else ``tpm`` (LiteLLM's order); under
        usage-based routing ``tpm``, else ``rpm``."""
        weight = _number(params.get("weight"))
        weighted = self.strategy == "simple-shuffle" or self.strategy.startswith("usage-based-routing")
        if weight is not None and weight >= 0 and weighted:
            return weight
        if self.strategy == "simple-shuffle":
            return rpm if rpm is not None else tpm
        if self.strategy.startswith("usage-based-routing"):
            return tpm if tpm is not None else rpm
        return None

    def model_settings(
        self, path: str, params: Mapping[str, Any], info: Mapping[str, Any], *, hosted: bool
    ) -> dict[str, Any]:
        """The model-level keys: prices, token limits, temperature. A
        ``hosted`` model without a price gets a note (a local one is free)."""
        model: dict[str, Any] = {}
        for ours, theirs in (
            ("inputCostPerToken", "input_cost_per_token"),
            ("outputCostPerToken", "output_cost_per_token"),
        ):
            value = _number(info.get(theirs, params.get(theirs)))
            if value is not None and value >= 0:
                model[ours] = value
        max_tokens = _number(params.get("max_tokens", info.get("max_output_tokens", info.get("max_tokens"))))
        if max_tokens is not None and max_tokens >= 1:
            model["maxTokens"] = int(max_tokens)
        context = _number(info.get("max_input_tokens"))
        if context is not None and context >= 1:
            model["contextWindow"] = int(context)
        temperature = _number(params.get("temperature"))
        if temperature is not None:
            model["temperature"] = _whole(temperature)
        if "inputCostPerToken" not in model and "outputCostPerToken" not in model and hosted:
            self.note(
                f"{path}.model_info",
                f"no price for {params['model']!r}: LiteLLM knows list prices, swarmgate only configured ones; "
                "without inputCostPerToken/outputCostPerToken its requests cost 0 in budgets and analytics",
            )
        for key in info:
            if (
                key in _QUIET_INFO
                or key.startswith("supports_")
                or key
                in (
                    "input_cost_per_token",
                    "output_cost_per_token",
                    "max_tokens",
                    "max_output_tokens",
                    "max_input_tokens",
                )
            ):
                continue
            self.note(f"{path}.model_info.{key}", "no swarmgate equivalent; ignored")
        return model

    def place(
        self,
        kind: Kind,
        prefix: str,
        settings: dict[str, Any],
        model_key: str | None,
        model_settings: dict[str, Any],
    ) -> _Provider:
        """The provider for a deployment: an existing one with the same
        settings (and no other settings for the same model), else a new one."""
        if model_key is not None:
            for provider in self.providers.values():
                if provider.settings != settings or provider.litellm_provider == "*":
                    continue
                if provider.models.get(model_key, model_settings) != model_settings:
                    continue
                provider.models[model_key] = model_settings
                return provider
        name = self.name_for(kind, settings.get("endpoint") if isinstance(settings.get("endpoint"), str) else None)
        provider = _Provider(name, settings, litellm_provider=prefix if model_key is not None else "*", kind=kind)
        if model_key is not None:
            provider.models[model_key] = model_settings
        self.providers[name] = provider
        return provider

    def name_for(self, kind: Kind, endpoint: str | None) -> str:
        """A provider name: the kind's, else with the endpoint's host, else numbered;
        never a model group's name (routes are named after the groups)."""
        taken = set(self.providers) | self.reserved
        candidates = [kind.base]
        label = _host_label(endpoint) if endpoint != kind.endpoint else None
        if label and label != kind.base:
            candidates.append(f"{kind.base}-{label}")
        for candidate in candidates:
            if candidate not in taken:
                return candidate
        n = 2
        while f"{kind.base}-{n}" in taken:
            n += 1
        return f"{kind.base}-{n}"

    def render_provider(self, provider: _Provider) -> dict[str, Any]:
        out = dict(provider.settings)
        out["models"] = provider.models
        return out

    # -- routing ------------------------------------------------------------------------

    def routing(self) -> dict[str, Any]:
        routing: dict[str, Any] = {}
        strategy = self.router.get("routing_strategy")
        if strategy is not None and strategy not in STRATEGIES:
            self.note(
                "router_settings.routing_strategy",
                f"{strategy!r} has no swarmgate equivalent (known: {', '.join(sorted(STRATEGIES))}); "
                "the default routing (priority, round-robin) is used",
            )
        ours, balancer, difference = STRATEGIES.get(self.strategy, STRATEGIES["simple-shuffle"])
        if balancer is None:
            weighted = any("weight" in p.settings for p in self.providers.values())
            balancer = "weighted-round-robin" if weighted else "round-robin"
        if ours != "priority":
            routing["strategy"] = ours
        if balancer != "round-robin":
            routing["loadBalancing"] = balancer
        if difference:
            self.note("router_settings.routing_strategy", f"{self.strategy}: {difference}")
        if "routing_strategy_args" in self.router:
            self.note(
                "router_settings.routing_strategy_args",
                "swarmgate's strategies learn their figures online; their tuning is routing.parameters "
                "(see docs/routing.md); ignored",
            )
        if ours != "priority" and any(d.order is not None for d in self.deployments):
            self.note(
                "model_list",
                f"deployments with 'order' become provider priorities, which only the 'priority' strategy "
                f"follows; under {ours!r} they do not decide",
            )
        return routing

    def fallback_lists(self, key: str) -> list[tuple[str, str, list[str]]]:
        """``[{group: [fallback groups]}]`` of ``key`` as (path, group, fallbacks)."""
        found = self.setting(key)
        if found is None:
            return []
        value, path = found
        items = value if isinstance(value, list) else [value]
        out = []
        for i, item in enumerate(items):
            where = f"{path}[{i}]" if isinstance(value, list) else path
            if not isinstance(item, Mapping):
                raise MigrationError([(where, "expected {model_group: [fallback model groups]}")])
            for group, fallbacks in item.items():
                names = fallbacks if isinstance(fallbacks, list) else [fallbacks]
                out.append((f"{where}.{group}", str(group), [str(n) for n in names]))
        return out

    def known_group(self, path: str, group: str) -> bool:
        if group in self.groups:
            return True
        if group in self.dropped_groups:
            self.note(path, f"model group {group!r} was left out (see its deployments); dropped here")
        else:
            self.note(path, f"unknown model group {group!r}; dropped")
        return False

    def routes(self) -> dict[str, Any]:
        fallbacks: dict[str, list[str]] = {}
        for path, group, names in self.fallback_lists("fallbacks"):
            if self.known_group(path, group):
                for name in names:
                    if self.known_group(f"{path}[{names.index(name)}]", name):
                        fallbacks.setdefault(group, []).append(name)
        context = self.fallback_lists("context_window_fallbacks")
        for path, group, names in context:
            if self.known_group(path, group):
                for name in names:
                    if self.known_group(f"{path}[{names.index(name)}]", name):
                        fallbacks.setdefault(group, []).append(name)
        if context:
            found = self.setting("context_window_fallbacks")
            assert found is not None
            self.note(
                found[1],
                "context-window fallbacks become route fallbacks: swarmgate fails over to them on any error that "
                "fails over (a context-length error included), not only on a context-length error",
            )
        found = self.setting("default_fallbacks")
        if found is not None:
            value, path = found
            names = [str(n) for n in (value if isinstance(value, list) else [value])]
            defaults = [n for i, n in enumerate(names) if self.known_group(f"{path}[{i}]", n)]
            for group in self.groups:
                fallbacks.setdefault(group, []).extend(n for n in defaults if n != group)
        found = self.setting("content_policy_fallbacks")
        if found is not None:
            self.note(
                found[1],
                "swarmgate never fails over a content-filter refusal (the caller gets the provider's reason); ignored",
            )
        routes: dict[str, Any] = {}
        for group, targets in self.groups.items():
            if not targets:
                continue  # a wildcard group: its provider is a pass-through
            chain: list[str] = []
            for name in fallbacks.get(group, []):
                for target in self.groups.get(name, []):
                    if target not in targets and target not in chain:
                        chain.append(target)
            model = targets[0].split("/", 1)[1]
            single = len(targets) == 1 and model == group and self.serving(model) == 1
            if single and not chain:
                continue
            route: dict[str, Any] = {"targets": list(targets)}
            if chain:
                route["fallbacks"] = chain
            routes[group] = route
        self.aliases(routes)
        return routes

    def serving(self, model: str) -> int:
        """How many providers list ``model`` (a request for it goes to each)."""
        return sum(1 for p in self.providers.values() if model in p.models)

    def aliases(self, routes: dict[str, Any]) -> None:
        found = self.setting("model_group_alias")
        if found is None:
            return
        value, path = found
        if not isinstance(value, Mapping):
            raise MigrationError([(path, "expected {alias: model group}")])
        for alias, spec in value.items():
            where = f"{path}.{alias}"
            group = spec.get("model") if isinstance(spec, Mapping) else spec
            if isinstance(spec, Mapping) and spec.get("hidden"):
                self.note(f"{where}.hidden", "swarmgate lists every route in /v1/models; the alias is not hidden")
            if not isinstance(group, str) or not self.known_group(where, group):
                continue
            if alias in self.providers:
                self.note(where, f"the alias {alias!r} is a provider's name; dropped")
                continue
            if group in routes:
                routes[str(alias)] = dict(routes[group])
            elif self.groups[group]:
                routes[str(alias)] = {"targets": list(self.groups[group])}
            else:
                self.note(where, f"{group!r} is a wildcard group: an alias of it has no targets; dropped")

    # -- retries, breaker -------------------------------------------------------------------

    def retries(self) -> None:
        retry: dict[str, Any] = {}
        found = self.setting("num_retries")
        if found is not None:
            value = _number(found[0])
            if value is None or value < 0:
                self.note(found[1], f"expected a number of retries, got {found[0]!r}; ignored")
            else:
                retry["maxAttempts"] = int(value) + 1
        found = self.setting("retry_after")
        if found is not None:
            value = _number(found[0])
            if value is not None and value > 0:
                retry["initialDelay"] = _ms(value)
        found = self.setting("retry_policy")
        if found is not None:
            policy, path = found
            if not isinstance(policy, Mapping):
                raise MigrationError([(path, "expected {ErrorTypeRetries: count}")])
            never: list[str] = []
            counts: list[int] = []
            for key, count in policy.items():
                number = _number(count)
                if key in _RETRY_POLICY and number is not None:
                    if number <= 0:
                        never.append(_RETRY_POLICY[key])
                    else:
                        counts.append(int(number))
                elif key in _NEVER_RETRIED:
                    if number:
                        self.note(
                            f"{path}.{key}",
                            "swarmgate never retries this error on the same target (it fails over or stops); ignored",
                        )
                else:
                    self.note(f"{path}.{key}", "no swarmgate equivalent; ignored")
            if never:
                retry["errorClassification"] = {"nonRetryable": never}
            if counts:
                if "maxAttempts" not in retry:
                    retry["maxAttempts"] = max(counts) + 1
                if len(set(counts)) > 1:
                    self.note(
                        path,
                        f"swarmgate has one retry count for every retryable error: maxAttempts "
                        f"{retry['maxAttempts']} (retries + 1) applies to each",
                    )
        if retry:
            self.out.setdefault("optimization", {})["retry"] = retry

    def breaker(self, routing: dict[str, Any]) -> None:
        disabled = self.setting("disable_cooldowns")
        fails = self.setting("allowed_fails")
        cooldown = self.setting("cooldown_time")
        if disabled is not None and _truthy(disabled[0]):
            if fails is not None or cooldown is not None:
                self.note(disabled[1], "cooldowns are disabled: allowed_fails and cooldown_time are not converted")
            return
        breaker: dict[str, Any] = {}
        if fails is not None:
            value = _number(fails[0])
            if value is not None and value >= 0:
                breaker["failureThreshold"] = max(int(value), 1)
                self.note(
                    fails[1],
                    "swarmgate's breaker opens after failureThreshold consecutive failures of a provider's model "
                    "(LiteLLM counts failures per minute of a deployment)",
                )
        if cooldown is not None:
            value = _number(cooldown[0])
            if value is not None and value > 0:
                breaker["timeout"] = _ms(value)
        if breaker:
            routing["circuitBreaker"] = {"enabled": True, **breaker}
        found = self.setting("allowed_fails_policy")
        if found is not None:
            self.note(found[1], "swarmgate has one failure threshold for every counted error kind; ignored")

    # -- caching and state ---------------------------------------------------------------------

    def caching(self) -> None:
        cache = self.litellm.get("cache")
        params = self.litellm.get("cache_params")
        router_cache = self.router.get("cache_responses")
        enabled = _truthy(cache) if cache is not None else params is not None
        if router_cache is not None and _truthy(router_cache):
            enabled = True
        if not enabled:
            if params is not None:
                self.note("litellm_settings.cache_params", "cache is false: the cache parameters are not converted")
            self.redis_state(None)
            return
        params = params or {}
        if not isinstance(params, Mapping):
            raise MigrationError([("litellm_settings.cache_params", "expected a mapping")])
        caching: dict[str, Any] = {"enabled": True, "cacheNonDeterministic": True}
        self.note(
            "litellm_settings.cache",
            "LiteLLM caches every request; so does the converted config (cacheNonDeterministic: true). "
            "swarmgate's default caches only deterministic requests (temperature 0)",
        )
        for key in ("ttl", "default_in_redis_ttl", "default_in_memory_ttl"):
            value = _number(params.get(key))
            if value is not None and value > 0:
                caching["ttl"] = _ms(value)
                break
        namespace = params.get("namespace")
        if isinstance(namespace, str) and namespace:
            caching["namespace"] = namespace
        kind = params.get("type", "local")
        redis: Mapping[str, Any] | None = None
        if kind == "redis":
            redis = params
        elif kind in ("redis-semantic", "qdrant-semantic", "valkey-semantic"):
            self.note(
                "litellm_settings.cache_params.type",
                f"{kind}: swarmgate's cache is exact-match (no semantic cache); converted as an exact-match cache",
            )
        elif kind != "local":
            self.note(
                "litellm_settings.cache_params.type",
                f"{kind!r}: swarmgate keeps its cache in the state backend (memory, or Redis); "
                "converted as the in-memory cache",
            )
        handled = {
            "type",
            "ttl",
            "default_in_redis_ttl",
            "default_in_memory_ttl",
            "namespace",
            "supported_call_types",
            "host",
            "port",
            "password",
            "username",
            "url",
            "redis_url",
            "ssl",
            "max_connections",
        }
        for key in params:
            if key not in handled:
                self.note(f"litellm_settings.cache_params.{key}", "no swarmgate equivalent; ignored")
        self.out.setdefault("optimization", {})["caching"] = caching
        self.redis_state(redis)

    def redis_state(self, cache: Mapping[str, Any] | None) -> None:
        """``state``: Redis when the router shares state through it
        (``redis_host``/``redis_url``) or the cache lives in it."""
        router = {k[len("redis_") :]: v for k, v in self.router.items() if k.startswith("redis_")}
        source = router or cache
        if source is None:
            return
        path = "router_settings.redis_*" if router else "litellm_settings.cache_params"
        if router and cache is not None and any(cache.get(k) != router.get(k) for k in ("host", "port", "url")):
            self.note(
                path,
                "the cache's Redis and the router's differ: swarmgate keeps all shared state, the cache included, "
                "in one backend (the router's)",
            )
        url = source.get("url", source.get("redis_url"))
        options: dict[str, Any] = {}
        if isinstance(url, str) and url:
            options["url"] = url
        elif source.get("host") is not None:
            host = str(source["host"])
            port = source.get("port", 6379)
            password = source.get("password")
            user = source.get("username")
            scheme = "rediss" if _truthy(source.get("ssl", False)) else "redis"
            auth = ""
            if password is not None:
                auth = f"{user or ''}:{password}@"
            options["url"] = f"{scheme}://{auth}{host}:{port}/0"
            if password is not None and not _is_env(password):
                self.note(f"{path}.password", "a literal password, copied into state.options.url")
        else:
            options["url"] = "${REDIS_URL:-redis://127.0.0.1:6379/0}"
            self.note(
                path,
                "no Redis host in the file (LiteLLM then reads REDIS_HOST, REDIS_PORT, REDIS_PASSWORD): "
                "set REDIS_URL=redis://:password@host:port/0 for swarmgate",
            )
        connections = _number(source.get("max_connections"))
        if connections is not None and connections >= 1:
            options["maxConnections"] = int(connections)
        self.out["state"] = {"backend": "redis", "options": options}

    # -- budgets, server, environment -----------------------------------------------------------------

    def budgets(self, routing: dict[str, Any]) -> None:
        budget = _number(self.litellm.get("max_budget"))
        if budget is not None:
            duration = self.litellm.get("budget_duration")
            period = _budget_period(duration) if duration is not None else "monthly"
            if duration is None:
                self.note(
                    "litellm_settings.max_budget",
                    "no budget_duration: LiteLLM's budget never resets; converted as a monthly budget",
                )
            if period is None:
                self.note(
                    "litellm_settings.budget_duration",
                    f"swarmgate budgets are daily or monthly; {duration!r} has no equivalent: max_budget left out",
                )
            else:
                routing.setdefault("budgetLimits", {})[period] = _whole(budget)
        config = self.router.get("provider_budget_config")
        if isinstance(config, Mapping):
            for name, spec in config.items():
                where = f"router_settings.provider_budget_config.{name}"
                limit = _number(spec.get("budget_limit")) if isinstance(spec, Mapping) else None
                period = _budget_period(spec.get("time_period")) if isinstance(spec, Mapping) else None
                matched = [p for p in self.providers.values() if p.litellm_provider == name]
                if limit is None or period is None:
                    self.note(where, "expected budget_limit and a time_period of 1d or 30d; ignored")
                elif not matched:
                    self.note(where, f"no converted deployment of LiteLLM provider {name!r}; ignored")
                else:
                    for provider in matched:
                        provider.settings.setdefault("budget", {})[period] = _whole(limit)

    def server(self) -> None:
        key = self.general.get("master_key")
        if key is None:
            return
        if not isinstance(key, str) or not key:
            raise MigrationError([("general_settings.master_key", "expected a string")])
        if not _is_env(key):
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
            self.note(
                "general_settings.master_key",
                "written as its SHA-256 digest (clients keep sending the same key); the admin API takes it too",
            )
        self.out["server"] = {"adminKey": key, "apiKeys": [{"key": key, "name": "master"}]}

    def environment(self) -> None:
        variables = self.doc.get("environment_variables")
        if isinstance(variables, Mapping) and variables:
            self.note(
                "environment_variables",
                "swarmgate does not set environment variables from its config: export "
                + ", ".join(sorted(str(k) for k in variables))
                + " before starting the gateway",
            )

    def leftovers(self) -> None:
        """A note for every settings key no step read."""
        router_read = {
            "routing_strategy",
            "num_retries",
            "retry_after",
            "retry_policy",
            "allowed_fails",
            "allowed_fails_policy",
            "cooldown_time",
            "disable_cooldowns",
            "timeout",
            "stream_timeout",
            "fallbacks",
            "context_window_fallbacks",
            "content_policy_fallbacks",
            "default_fallbacks",
            "model_group_alias",
            "cache_responses",
            "provider_budget_config",
        }
        for key in self.router:
            if key in _QUIET_ROUTER or key in router_read or key.startswith("redis_"):
                continue
            self.note(f"router_settings.{key}", "no swarmgate equivalent; ignored")
        litellm_read = {
            "cache",
            "cache_params",
            "num_retries",
            "request_timeout",
            "fallbacks",
            "context_window_fallbacks",
            "content_policy_fallbacks",
            "default_fallbacks",
            "max_budget",
            "budget_duration",
            "retry_after",
            "retry_policy",
            "allowed_fails",
            "cooldown_time",
            "disable_cooldowns",
            "model_group_alias",
            "timeout",
            "stream_timeout",
        }
        for key in self.litellm:
            if key in _QUIET_LITELLM or key in litellm_read:
                continue
            hint = ""
            if key in ("success_callback", "failure_callback", "callbacks", "service_callback"):
                hint = " (swarmgate records every request in its usage log and delivers alerts by webhook or email)"
            self.note(f"litellm_settings.{key}", f"no swarmgate equivalent; ignored{hint}")
        for key in self.general:
            if key == "master_key":
                continue
            self.note(f"general_settings.{key}", "no swarmgate equivalent; ignored")


def convert(doc: Any) -> Migration:
    """Convert a LiteLLM proxy config (the parsed YAML) into a swarmgate
    config. Raises :class:`MigrationError` naming the path of anything that
    makes the file unreadable as a LiteLLM config; everything readable but
    without an equivalent is a :class:`Note` on the result."""
    if not isinstance(doc, Mapping):
        raise MigrationError([("", f"a LiteLLM config is a mapping, got {type(doc).__name__}")])
    return _Converter(env_refs(doc)).run()
