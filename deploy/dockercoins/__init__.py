"""DockerCoins in Python: the tool that runs, builds, ships and deploys the four services."""

__version__ = "0.1.0"
