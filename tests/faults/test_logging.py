"""Bad logging settings: a tracker enabled in the recipe whose package is not installed fails at
start with the line to install it."""

import sys

import pytest

from nemo_vtp.config.run import MlflowConfig, WandbConfig
from nemo_vtp.training.logging import MetricsLogger


@pytest.mark.parametrize(("module", "trackers"), [
    ("wandb", {"wandb": WandbConfig(enabled=True)}),
    ("mlflow", {"mlflow": MlflowConfig(enabled=True)}),
])
def test_missing_tracker_package_is_a_clear_error(tmp_path, monkeypatch, module, trackers):
    monkeypatch.setitem(sys.modules, module, None)  # `import <module>` now raises ImportError
    with pytest.raises(ImportError, match=rf"logging.{module}.enabled=true needs the `{module}` package: pip install"):
        MetricsLogger(tmp_path, tensorboard=False, progress_bar=False, **trackers)
