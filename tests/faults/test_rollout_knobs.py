"""Bad rollout-knob recipes: one knob per quantity. A recipe that sets a removed twin (rl.group_size,
rl.temperature, rewards.max_response_tokens), a length band that does not fit the rollout cap, or an SFT
key the RL stage would silently ignore fails with a message naming the file:line and the key to set."""

import re
from pathlib import Path

import pytest

from nemo_vtp.config import ConfigError, load_config

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.mark.parametrize("section, key, value, now", [
    ("rl", "group_size", 16, "generation.sampling.n"),
    ("rl", "temperature", 1.0, "generation.sampling.temperature"),
    ("rewards", "max_response_tokens", 4096, "generation.sampling.max_new_tokens"),
])
def test_removed_duplicate_knob_is_an_error_at_its_line(tmp_path, section, key, value, now):
    """One knob per quantity: a recipe that still sets the removed twin fails at its file:line."""
    recipe = tmp_path / "old.yaml"
    recipe.write_text(f"defaults: [{RECIPES / 'rl/rl-qwen25vl-7b-vtp22k-1n8g-tp4.yaml'}]\n{section}:\n  {key}: {value}\n")
    with pytest.raises(ConfigError, match=rf"old.yaml:3: unknown key '{section}.{key}'.*set '{now}' instead"):
        load_config(recipe)


def test_overlong_cache_above_the_rollout_cap_is_refused(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("generation:\n  sampling:\n    max_new_tokens: 160\nrewards:\n  overlong_cache_tokens: 200\n")
    with pytest.raises(ConfigError, match=r"r.yaml:5: rewards.overlong_cache_tokens: .*exceeds L_max"):
        load_config(recipe)
    assert load_config(recipe, ["rewards.overlong_cache_tokens=160"]).rewards.overlong_cache_tokens == 160


@pytest.mark.parametrize("override, named", [
    ("training.train_steps=100", "training.train_steps (set rl.rollout_steps)"),
    ("training.micro_batch_size=2", "training.micro_batch_size (set rl.micro_batch_size)"),
    ("data.max_seq_length=512", "data.max_seq_length (set generation.sampling.max_new_tokens"),
])
def test_rl_stage_refuses_the_sft_twin_of_its_own_knob(override, named):
    """Stage twins: the RL loop reads rl.rollout_steps, not training.train_steps; changing the one it
    ignores is an error, not a silent no-op."""
    from nemo_vtp.dapo import _check_recipe

    tiny = RECIPES / "tiny" / "rl.yaml"
    _check_recipe(load_config(tiny), dp_size=1)  # the shipped recipe passes
    with pytest.raises(ConfigError, match=re.escape(named)):
        _check_recipe(load_config(tiny, [override]), dp_size=1)


def test_vllm_cap_must_leave_room_for_the_prompt(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("generation:\n  engine: vllm\n  sampling:\n    max_new_tokens: 4096\n")
    with pytest.raises(ConfigError, match=r"r.yaml:4: generation.sampling.max_new_tokens: .*max_model_len=4096"):
        load_config(recipe)
