"""The RL prompt length limit: an explicit rl.max_prompt_tokens, else the engine's context less the
response budget; a budget that leaves no room is a ConfigError."""

from pathlib import Path

import pytest

from nemo_vtp.config import ConfigError, load_config
from nemo_vtp.training.data import max_prompt_tokens

RECIPE = Path(__file__).resolve().parents[2] / "recipes/tiny/rl.yaml"


@pytest.mark.parametrize("overrides,want", [
    (["generation.sampling.max_new_tokens=100"], 4096 - 100),  # torch engine: the model's context
    (["generation.engine=vllm", "generation.vllm.max_model_len=1024", "generation.sampling.max_new_tokens=24",
      "rewards.overlong_cache_tokens=6"], 1000),
    (["rl.max_prompt_tokens=77"], 77),
])
def test_max_prompt_tokens(overrides, want):
    assert max_prompt_tokens(load_config(RECIPE, overrides), max_position_embeddings=4096) == want


def test_no_room_for_a_prompt_is_a_config_error():
    cfg = load_config(RECIPE, ["generation.sampling.max_new_tokens=4096"])
    with pytest.raises(ConfigError, match="leaves no room for a prompt"):
        max_prompt_tokens(cfg, max_position_embeddings=4096)
