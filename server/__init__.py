"""Segue's server layer: config, the aiohttp app, the embedded Redis, the CLI.

Other layers import from here only what is listed in ``__all__``.
"""

from .app import NODE, Node, create_app
from .auth import IdentityError, Signer, TokenError, hash_password, verify_identity, verify_password
from .cli import EXTRA_COMMANDS, UsageError
from .config import Config, ConfigError, RoutingConfig, load_config
from .embedded_redis import EmbeddedRedis, RedisUnavailable
from .version import __version__

__all__ = [
    "NODE", "Node", "create_app", "Config", "ConfigError", "RoutingConfig", "load_config",
    "EmbeddedRedis", "RedisUnavailable", "__version__",
    "Signer", "TokenError", "IdentityError", "hash_password", "verify_password", "verify_identity",
    "EXTRA_COMMANDS", "UsageError",
]
