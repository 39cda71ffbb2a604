"""nemo_vtp: perception-grounded multimodal reasoning (VTPerception-R1) on Megatron-core."""

from setuptools import find_packages, setup

# torch is deliberately unpinned here: `make setup` installs the right build first (the CPU
# wheel on a machine without a GPU) and pip then keeps it. Pinning it here would pull a CUDA
# build on a CPU-only machine.
CORE = [
    "torch>=2.6",
    "megatron-core>=0.16.1",
    "transformers>=4.57",
    "datasets>=3.0",
    "tensorboard>=2.16",
    "math-verify>=0.7",
    "pillow>=10.0",
    "pydantic>=2.7",
    "omegaconf>=2.3",
    "pyyaml>=6.0",
    "tqdm>=4.66",
    "safetensors>=0.4",
    "tokenizers>=0.20",
    "matplotlib>=3.8",
    "psutil>=5.9",  # megatron dist_checkpointing writer processes need it (they hang without it)
]

EXTRAS = {
    "gpu": ["transformer-engine[pytorch]>=2.8", "vllm>=0.20,<=0.26", "flash-attn>=2.7"],
    "wandb": ["wandb>=0.18"],  # logging.wandb.enabled
    "mlflow": ["mlflow-skinny>=2.16"],  # logging.mlflow.enabled (the full `mlflow` package works too)
    "dev": ["pytest>=8.0", "pytest-timeout>=2.3", "ruff>=0.6", "wandb>=0.18", "mlflow-skinny>=2.16"],
}

setup(
    name="nemo_vtp",
    version="0.1.0",
    description="Training stack for perception-grounded multimodal reasoning (VTPerception-R1) on Megatron-core",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # The checkout's recipes/ ships as nemo_vtp/recipes/ (nemo_vtp.recipe_files finds either).
    packages=[*find_packages(include=["nemo_vtp", "nemo_vtp.*"]), "nemo_vtp.recipes"],
    package_dir={"nemo_vtp.recipes": "recipes"},
    package_data={"nemo_vtp": ["**/*.yaml", "**/*.txt", "**/*.json", "**/*.jinja"],
                  "nemo_vtp.recipes": ["*.yaml", "*/*.yaml"]},
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["nemo-vtp=nemo_vtp.cli:main"]},
)
