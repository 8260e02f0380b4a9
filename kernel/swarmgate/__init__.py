"""swarmgate: route LLM requests across providers, with failover and plugins.

The public API is exactly ``__all__``; everything else is internal.
"""

from importlib import metadata as _metadata

from swarmgate.alerts import Alert
from swarmgate.callers import CallerDirectory, CallerPolicy
from swarmgate.config import ModelConfig, ProviderConfig, SwarmgateConfig, load_config, parse_section
from swarmgate.errors import (
    AuthenticationError,
    BudgetExceededError,
    ConfigError,
    ContentFilteredError,
    ContextLengthExceededError,
    ErrorKind,
    InvalidRequestError,
    NoProviderAvailableError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    PluginError,
    ProviderConnectionError,
    ProviderTimeoutError,
    RateLimitedError,
    RequestCancelledError,
    ServerError,
    SwarmgateError,
    UnknownModelError,
    http_status,
)
from swarmgate.hookspecs import hookimpl
from swarmgate.keys import KeySource
from swarmgate.manager import EnhancedProviderManager, FailureDecision, ProviderManager, RequestContext
from swarmgate.models import (
    Attempt,
    CacheControl,
    CompletionRequest,
    CompletionResponse,
    Constraints,
    ErrorEvent,
    FinishEvent,
    HealthStatus,
    Message,
    Preferences,
    ProviderEvent,
    ProviderReply,
    RequestTimeouts,
    StreamEvent,
    StreamFailover,
    StreamStart,
    Target,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
    UsageEvent,
)
from swarmgate.provider import Provider, ProviderCall
from swarmgate.state import MemoryStateStore, StateStore
from swarmgate.stats import estimate_tokens

try:
    __version__ = _metadata.version("swarmgate")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "Alert",
    "Attempt",
    "AuthenticationError",
    "BudgetExceededError",
    "CacheControl",
    "CallerDirectory",
    "CallerPolicy",
    "CompletionRequest",
    "CompletionResponse",
    "ConfigError",
    "Constraints",
    "ContentFilteredError",
    "ContextLengthExceededError",
    "EnhancedProviderManager",
    "ErrorEvent",
    "ErrorKind",
    "FailureDecision",
    "FinishEvent",
    "HealthStatus",
    "InvalidRequestError",
    "KeySource",
    "MemoryStateStore",
    "Message",
    "ModelConfig",
    "NoProviderAvailableError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "PluginError",
    "Preferences",
    "Provider",
    "ProviderCall",
    "ProviderConfig",
    "ProviderConnectionError",
    "ProviderEvent",
    "ProviderManager",
    "ProviderReply",
    "ProviderTimeoutError",
    "RateLimitedError",
    "RequestCancelledError",
    "RequestContext",
    "RequestTimeouts",
    "ServerError",
    "StateStore",
    "StreamEvent",
    "StreamFailover",
    "StreamStart",
    "SwarmgateConfig",
    "SwarmgateError",
    "Target",
    "TextDelta",
    "TokenUsage",
    "ToolCallDelta",
    "UnknownModelError",
    "UsageEvent",
    "__version__",
    "estimate_tokens",
    "hookimpl",
    "http_status",
    "load_config",
    "parse_section",
]
