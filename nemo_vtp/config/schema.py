"""The top-level recipe schema. Every default lives in the section classes, one place each."""

from pydantic import Field

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
