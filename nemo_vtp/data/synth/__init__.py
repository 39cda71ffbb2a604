"""The synthetic perception world: PIL scenes, questions needing perception then arithmetic, exact key facts."""

from nemo_vtp.data.synth.world import WorldSpec, generate, make_sample, split_of, task_combos, world_differences

__all__ = ["WorldSpec", "generate", "make_sample", "split_of", "task_combos", "world_differences"]
