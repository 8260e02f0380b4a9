"""The ``local`` type's own config keys and its defaults."""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import attrs

from swarmgate.config import InvalidValue

Api: TypeAlias = Literal["ollama", "openai"]

DEFAULT_OLLAMA_ENDPOINT = "http://127.0.0.1:11434"
"""Where a ``local`` provider with ``"api": "ollama"`` (the default) and no
``endpoint`` sends requests: Ollama's default address."""

DEFAULT_OPENAI_ENDPOINT = "http://127.0.0.1:8000/v1"
"""Where a ``local`` provider with ``"api": "openai"`` and no ``endpoint``
sends requests: vLLM's default address (llama.cpp's server listens on
``:8080/v1``, LM Studio on ``:1234/v1``; set ``endpoint`` for those)."""

APIS: tuple[Api, ...] = ("ollama", "openai")


def _check_api(_instance: object, _attribute: object, value: object) -> None:
    if value not in APIS:
        raise InvalidValue("api", f"expected one of {', '.join(repr(a) for a in APIS)}, got {value!r}")


def _check_keep_alive(_instance: object, _attribute: object, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidValue(
            "keepAlive", f'expected a duration string such as "5m" or a number of seconds, got {value!r}'
        )
    if isinstance(value, str) and not value.strip():
        raise InvalidValue("keepAlive", 'expected a duration string such as "5m", got an empty string')


@attrs.frozen
class LocalSettings:
    """The ``local`` type's own config keys (camelCase in JSON).

    ``api``: ``"ollama"`` (default) speaks Ollama's native ``/api/chat``;
    ``"openai"`` speaks the OpenAI Chat Completions API of vLLM, llama.cpp's
    server, LM Studio (or Ollama's own ``/v1``) through the ``openai``
    driver.

    Ollama only: ``keep_alive`` (``keepAlive``) is sent as ``keep_alive``
    (how long the model stays loaded: a duration such as ``"10m"``, or
    seconds; ``-1`` keeps it loaded, ``0`` unloads it after the call);
    ``options`` are default model options (``{"num_ctx": 8192, "seed": 7}``)
    under the request's own ``temperature``/``num_predict``/``top_p``/``stop``.

    OpenAI-compatible only: ``stream_usage`` (``streamUsage``, default true)
    asks for token usage in streams (``stream_options``); set false for a
    server that rejects it.

    A key that does not apply to the chosen ``api`` is a config error naming it.
    """

    api: str = attrs.field(default="ollama", validator=_check_api)
    keep_alive: Any = attrs.field(default=None, validator=_check_keep_alive)
    options: dict[str, Any] = attrs.field(factory=dict)
    stream_usage: bool | None = None

    def __attrs_post_init__(self) -> None:
        if self.api == "openai":
            if self.keep_alive is not None:
                raise InvalidValue("keepAlive", 'applies only to "api": "ollama"')
            if self.options:
                raise InvalidValue(
                    "options", 'applies only to "api": "ollama" (pass OpenAI fields in a request\'s extra)'
                )
        elif self.stream_usage is not None:
            raise InvalidValue("streamUsage", 'applies only to "api": "openai"')
