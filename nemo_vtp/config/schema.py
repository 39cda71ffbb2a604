"""The top-level recipe schema. Every default lives in the section classes, one place each."""

from pydantic import Field, model_validator

from nemo_vtp.config.ablation import AblationConfig
from nemo_vtp.config.base import Section
from nemo_vtp.config.data import DataConfig
from nemo_vtp.config.data_engine import DataEngineConfig
from nemo_vtp.config.eval import EvalConfig
from nemo_vtp.config.generation import GenerationConfig
from nemo_vtp.config.model import ModelConfig
from nemo_vtp.config.optim import OptimizerConfig
from nemo_vtp.config.parallel import ParallelConfig
from nemo_vtp.config.rewards import RewardConfig
from nemo_vtp.config.rl import RLConfig
from nemo_vtp.config.run import CheckpointConfig, LoggingConfig, RunConfig
from nemo_vtp.config.train import TrainingConfig


class RecipeConfig(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    parallel: ParallelConfig = Field(default_factory=ParallelConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    data_engine: DataEngineConfig = Field(default_factory=DataEngineConfig)  # `data annotate` / `data clean-sft`
    eval: EvalConfig = Field(default_factory=EvalConfig)
    rl: RLConfig = Field(default_factory=RLConfig)  # always present (defaults); only the rl stage reads it
    rewards: RewardConfig = Field(default_factory=RewardConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    ablation: AblationConfig = Field(default_factory=AblationConfig)  # `nemo-vtp ablate` (reads an RL recipe)

    @model_validator(mode="after")
    def _rollout_shape(self):
        """Checks that span sections; each message starts with the key to fix (the loader finds its line)."""
        sampling, rl = self.generation.sampling, self.rl
        responses = rl.num_prompts * sampling.n
        if responses % rl.mini_batch_size:
            raise ValueError(f"rl.mini_batch_size={rl.mini_batch_size}: rl.num_prompts * generation.sampling.n = "
                             f"{responses} responses do not split into mini-batches of that size")
        cache = self.rewards.overlong_cache_tokens
        if cache is not None and cache > sampling.max_new_tokens:
            raise ValueError(f"rewards.overlong_cache_tokens={cache} exceeds L_max of R_overlong, "
                             f"generation.sampling.max_new_tokens={sampling.max_new_tokens}")
        if self.generation.engine == "vllm" and sampling.max_new_tokens >= self.generation.vllm.max_model_len:
            raise ValueError(f"generation.sampling.max_new_tokens={sampling.max_new_tokens} leaves no room for the "
                             f"prompt in generation.vllm.max_model_len={self.generation.vllm.max_model_len}")
        return self
