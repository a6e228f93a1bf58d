"""Where the tool keeps its state (base images, wheelhouse, registry data, the lab)."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES_DIR = REPO_ROOT / "services"


def state_dir() -> Path:
    """DOCKERCOINS_STATE, default ~/.cache/dockercoins; created on first use."""
    path = Path(os.environ.get("DOCKERCOINS_STATE", Path.home() / ".cache" / "dockercoins"))
    path.mkdir(parents=True, exist_ok=True)
    return path
