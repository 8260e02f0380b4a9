"""The ``local`` provider type: LLMs served on your own machines.

Two APIs, chosen with ``"api"``:

* ``"ollama"`` (default): Ollama's native API. ``POST {endpoint}/api/chat``
  (NDJSON streaming), ``GET {endpoint}/api/tags`` as the health probe;
  ``endpoint`` defaults to ``http://127.0.0.1:11434``.
* ``"openai"``: an OpenAI-compatible server (vLLM, llama.cpp's
  ``llama-server``, LM Studio, Ollama's own ``/v1``), handled by the
  ``openai`` driver (:class:`swarmgate_openai.OpenAIProvider`);
  ``endpoint`` defaults to ``http://127.0.0.1:8000/v1``.

No API key is needed (one that is set is sent as a Bearer token, for a server
behind an authenticating proxy). Local models cost nothing unless their
model config sets prices.

Config (the guide's format)::

    "local": {
      "type": "local",
      "endpoint": "http://127.0.0.1:11434",   # optional
      "keepAlive": "30m",                      # Ollama: how long the model stays loaded
      "options": {"num_ctx": 8192},            # Ollama: default model options
      "models": {"llama3.2": {"maxTokens": 2048}, "qwen2.5:7b": {}},
      "timeout": 120000
    },
    "vllm": {"type": "local", "api": "openai", "endpoint": "http://127.0.0.1:8000/v1",
             "models": {"meta-llama/Llama-3.1-8B-Instruct": {}}}

The error mapping is documented in :mod:`swarmgate_local._errors`.
"""

from swarmgate_local._provider import LocalProvider
from swarmgate_local._settings import DEFAULT_OLLAMA_ENDPOINT, DEFAULT_OPENAI_ENDPOINT, LocalSettings

__all__ = ["DEFAULT_OLLAMA_ENDPOINT", "DEFAULT_OPENAI_ENDPOINT", "LocalProvider", "LocalSettings"]
