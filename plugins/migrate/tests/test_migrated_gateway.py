"""A converted LiteLLM config drives a real manager against fake upstreams on
loopback sockets: the model group's deployments share the traffic by their
weights, the group's fallback answers when every deployment fails, and the
cache LiteLLM had keeps answering repeated requests."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarmgate import ProviderManager
from swarmgate.testing import AnthropicWire, FakeUpstream, ScriptedReply
from swarmgate_migrate import migrate

pytestmark = pytest.mark.anyio

LITELLM = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {east}
      weight: 3
    model_info:
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {west}
      weight: 1
      timeout: 5
    model_info:
      input_cost_per_token: 0.000001
      output_cost_per_token: 0.000002
  - model_name: claude
    litellm_params:
      model: anthropic/claude-3-5-haiku
      api_base: {anthropic}
      api_key: os.environ/TEST_ANTHROPIC_KEY
router_settings:
  routing_strategy: simple-shuffle
  fallbacks:
    - gpt-4o: ["claude"]
litellm_settings:
  cache: true
  cache_params:
    type: local
    ttl: 60
"""


async def test_the_converted_config_balances_falls_back_and_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "test-anthropic-key-0000")
    async with FakeUpstream() as east, FakeUpstream() as west, FakeUpstream(AnthropicWire()) as anthropic:
        source = tmp_path / "config.yaml"
        source.write_text(LITELLM.format(east=east.url, west=west.url, anthropic=anthropic.url))
        migration = migrate(source)  # the manager below checks the plugins' sections
        config = migration.config
        route = config["routes"]["gpt-4o"]
        assert len(route["targets"]) == 2
        assert route["fallbacks"] == ["anthropic/claude-3-5-haiku"]
        async with ProviderManager(config) as manager:
            for i in range(8):
                response = await manager.complete(prompt=f"question {i}", model="gpt-4o", temperature=0.7)
                assert response.model == "gpt-4o"
            # Weights 3 and 1: smooth weighted round robin gives exactly 6 and 2 over 8 requests.
            assert (len(east.completions), len(west.completions)) == (6, 2)

            again = await manager.complete(prompt="question 0", model="gpt-4o", temperature=0.7)
            assert again.cached
            assert len(east.completions) + len(west.completions) == 8  # LiteLLM cached every request; so do we

            east.enqueue(ScriptedReply.error(500))
            west.enqueue(ScriptedReply.error(500))
            fallback = await manager.complete(prompt="both regions down", model="gpt-4o")
            assert (fallback.provider, fallback.model) == ("anthropic", "claude-3-5-haiku")
            assert [a.ok for a in fallback.attempts] == [False, False, True]
            assert anthropic.completions[-1].headers.get("x-api-key") == "test-anthropic-key-0000"
