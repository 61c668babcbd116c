"""Segue's server layer: config, the aiohttp app, the embedded Redis, the CLI.

Other layers import from here only what is listed in ``__all__``.
"""

from .app import NODE, Node, create_app
from .config import Config, ConfigError, load_config
from .embedded_redis import EmbeddedRedis, RedisUnavailable
from .version import __version__

__all__ = [
    "NODE", "Node", "create_app", "Config", "ConfigError", "load_config",
    "EmbeddedRedis", "RedisUnavailable", "__version__",
]
