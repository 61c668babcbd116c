"""Segue's settings: one typed tree, loaded from ``config.yaml`` and overridden by ``SEGUE_*`` variables.

Every setting has a default in the dataclasses below; ``config.yaml`` at the repository root
lists the same tree with the same defaults (a test keeps the two equal). An environment variable
named ``SEGUE_`` + the upper-cased dotted path (``http.port`` -> ``SEGUE_HTTP_PORT``) overrides a
value; its text is read as YAML, so ``SEGUE_MEDIA_ICE_SERVERS='[{urls: "stun:..."}]'`` works.
Unknown keys and wrong types fail at start with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .i18n import Message

ENV_PREFIX = "SEGUE_"


class ConfigError(Exception):
    """A setting is unknown or has the wrong type; the message names the key and what it expects."""


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # how browsers reach this node; empty: http://host:port
    shutdown_timeout_s: float = 10.0


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "text"  # text | json


@dataclass(frozen=True)
class RedisConfig:
    url: str = ""  # empty: start the embedded redis-server in data_dir
    key_prefix: str = "segue:"
    startup_timeout_s: float = 10.0
    # Several nodes: fan Socket.IO events out through Redis pub/sub (python-socketio's
    # AsyncRedisManager on this Redis). One node: keep false (in-memory, faster).
    # `segue serve --workers N` (N > 1) turns it on for its nodes.
    fanout: bool = False
    # --- scale-out and failover (docs/redis.md, docs/deployment.md) ---
    # the embedded Redis's AOF fsync: everysec (up to ~1 s of acknowledged writes lost if the
    # machine or Redis dies) or always (nothing acknowledged lost, each write waits for the disk)
    appendfsync: str = "everysec"
    # Redis Sentinel: "host:port" of each sentinel; when set, redis.url is not used and the
    # primary of sentinel_master is asked from them (and again after a failover)
    sentinels: list[str] = field(default_factory=list)
    sentinel_master: str = "mymaster"
    # the embedded Redis is restarted on the same data when its process dies (up to this many
    # times a minute; 0: never)
    restarts_per_minute: int = 10


@dataclass(frozen=True)
class AuthConfig:
    secret: str = ""  # signs visitor and agent tokens; empty: generated once into data_dir
    visitor_token_days: int = 365
    agent_token_hours: int = 12
    # site id -> HMAC secret, for embedding sites that vouch for a customer's identity
    sites: dict[str, str] = field(default_factory=dict)
    identity_max_age_s: int = 86400  # a site-signed identity is accepted this long after its ts
    # Login throttling (docs/security.md): failed logins are counted per account and per client
    # address over a window; past the limit each further try waits twice as long as the one
    # before, up to login_max_delay_s (a lockout is always bounded). An address that logged in to
    # an account before is not slowed down by that account's failures from elsewhere.
    login_window_s: int = 900
    login_failures_per_account: int = 5
    login_failures_per_ip: int = 20
    login_max_delay_s: int = 300
    # proxies whose X-Forwarded-For names the client (nginx on this machine); others are the client
    trusted_proxies: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])


@dataclass(frozen=True)
class DemoConfig:
    enabled: bool = True
    agent_username: str = "demo"
    agent_password: str = "demo"


@dataclass(frozen=True)
class LimitsConfig:
    max_event_bytes: int = 16384
    max_message_chars: int = 4000
    # --- hostile input and overload (docs/config.md "Limits"; signaling/limits.py) ---------------
    # Socket.IO events per connection: sustained rate and burst (no person types this fast)
    events_per_s: float = 20.0
    events_burst: int = 100
    # events of every connection from one client address, on this node (a NAT shares an address)
    ip_events_per_s: float = 500.0
    ip_events_burst: int = 2000
    # new Socket.IO connections from one client address, on this node
    connects_per_ip_per_s: float = 10.0
    connects_burst: int = 200
    # conversation.start per connection, and per client address on this node
    conversations_per_s: float = 0.2
    conversations_burst: int = 10
    ip_conversations_per_s: float = 2.0
    ip_conversations_burst: int = 100
    # a connection that goes on sending through this many refusals in a row is disconnected (0: never)
    disconnect_after_refusals: int = 200
    # target queueing delay: while the node's event loop runs later than this for 100 ms, it lowers
    # the rate of client events it admits (the rest: rate_limited) until it is on time (0: never shed)
    shed_lag_ms: float = 50.0
    # a fixed ceiling on client events the node admits per second in all, on top of the adaptive
    # budget; 0: none (the adaptive budget finds the node's capacity by itself)
    node_events_per_s: float = 0.0
    # packets / bytes waiting to be sent to one connection; a client that lets more pile up is disconnected
    send_queue_packets: int = 2000
    send_queue_bytes: int = 8_000_000
    # concurrent HTTP requests and WebSockets from one client address (per node); more get 429
    max_connections_per_ip: int = 500
    # a request's headers must arrive within this time (also: an idle keep-alive connection closes)
    http_header_timeout_s: float = 15.0
    # a request's body must arrive within this time
    http_body_timeout_s: float = 30.0


@dataclass(frozen=True)
class QueueConfig:
    name: str = "general"
    skills: list[str] = field(default_factory=list)
    answer_target_s: int = 30
    overflow_after_s: int = 0  # 0: never spill
    overflow_queue: str = ""
    record_calls: bool = False


@dataclass(frozen=True)
class RoutingConfig:
    offer_timeout_s: float = 20.0
    default_queue: str = "general"
    queues: list[QueueConfig] = field(
        default_factory=lambda: [
            QueueConfig(name="general"),
            QueueConfig(name="billing", skills=["billing"], overflow_after_s=120, overflow_queue="general"),
        ]
    )


@dataclass(frozen=True)
class IceServer:
    urls: list[str] = field(default_factory=list)
    username: str = ""
    credential: str = ""


@dataclass(frozen=True)
class TurnConfig:
    secret: str = ""  # shared with coturn (use-auth-secret / static-auth-secret)
    urls: list[str] = field(default_factory=list)
    ttl_s: int = 3600


@dataclass(frozen=True)
class MediaConfig:
    ice_servers: list[IceServer] = field(default_factory=list)
    turn: TurnConfig = field(default_factory=TurnConfig)
    # UDP ports of server peers' host candidates (one per leg and host address), inclusive;
    # 0 and 0: any port the OS gives. Applied per peer by media.ice.new_peer(port_range=...).
    udp_port_min: int = 0
    udp_port_max: int = 0
    reconnect_grace_s: float = 30.0
    recordings_dir: str = ""  # empty: <data_dir>/recordings
    # after a wake-up the forwarder waits this long before reading sockets again, so one wake-up
    # serves several packets: less CPU per call for that much added latency (0: none)
    receive_batch_ms: float = 0.0
    # which of this machine's addresses legs gather host candidates on (empty: every interface,
    # aioice's choice; ["127.0.0.1"]: one machine, e.g. tests)
    host_addresses: list[str] = field(default_factory=list)
    # the address browsers reach this node's UDP ports at, announced in place of the host
    # candidates' own (a 1:1 NAT, e.g. a cloud VM's public IP); empty: the host addresses
    public_address: str = ""


@dataclass(frozen=True)
class CorsConfig:
    """Which other sites' pages may use this node (docs/deployment.md, "Origins").

    Two surfaces, two lists: the customer surface (SDK, widget, ``/customer``) is meant to be
    embedded in other sites, the agent and supervisor surface (``/agent``, REST, console,
    wallboard) is not; a page on this node's own origin is always allowed.
    """

    # origins (scheme://host[:port]) whose pages may load /sdk/, /widget/, /vendor/ and connect
    # to /customer; ["*"]: any
    customer_origins: list[str] = field(default_factory=lambda: ["*"])
    # origins besides this node's own that may use /agent, /api/, /agent/ and /supervisor/
    agent_origins: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WebhooksConfig:
    """Delivery of webhooks (docs/webhooks.md): the worker each node runs, retries and limits."""

    enabled: bool = True  # run this node's delivery worker (events are queued either way)
    # wait before each retry (s): attempts = 1 + its length, over about 22 h; each wait +-jitter
    retry_schedule_s: list[float] = field(default_factory=lambda: [5.0, 30.0, 120.0, 600.0, 3600.0, 10800.0,
                                                                   21600.0, 43200.0])
    jitter: float = 0.2  # each wait is spread by up to this fraction, either way
    timeout_s: float = 10.0  # per request: an endpoint that answers later counts as failed
    concurrency: int = 16  # requests in flight at once, per node
    endpoint_concurrency: int = 4  # of which to one endpoint (a slow one cannot hold up the others)
    claim_idle_s: float = 60.0  # queued events a dead node had taken are taken over after this
    refresh_s: float = 10.0  # subscriptions are re-read this often (and at once on a change)
    keep_days: float = 7.0  # finished deliveries stay readable this long
    deliveries_kept: int = 1000  # listed per endpoint (the newest)
    # endpoints on loopback, private, link-local addresses (refused by default: SSRF; docs/security.md)
    allow_private_urls: bool = False


@dataclass(frozen=True)
class ClusterConfig:
    """Several nodes on one Redis (docs/deployment.md "Several nodes", "When a node dies")."""

    # this node's name: the value of the sticky cookie it sets and of nginx's map; empty: <host name>-<random>,
    # drawn at the first start and kept in <data_dir>/node-id (signaling/cluster.py claim_node_id)
    node_id: str = ""
    # name of the cookie each node sets to its node_id so a proxy sends a browser back to it ("": none)
    sticky_cookie: str = "segue_node"
    heartbeat_s: float = 1.0  # each node writes its heartbeat this often
    # a node silent this long is dead: survivors drop its agents' sockets and take over its calls
    node_ttl_s: float = 5.0
    # conversations of an agent who went offline with a dead node stay assigned this long, then
    # return to their queue (the agent reconnecting in time keeps them)
    reassign_after_s: float = 120.0
    # SIGTERM: the node takes no new conversations or calls; running calls may go on this long,
    # then move to another node
    drain_timeout_s: float = 300.0
    # how long a node waits for the node that holds a call to answer a forwarded call.* event
    forward_timeout_s: float = 15.0
    # how the other nodes reach this node's HTTP port (they fetch its call recordings there:
    # docs/deployment.md "Recordings with several nodes"); empty: http://<http.host>:<http.port>, the
    # host name when http.host listens on every interface
    internal_url: str = ""


@dataclass(frozen=True)
class KnowledgeConfig:
    """The knowledge base and search (docs/knowledge.md): the self-service window and how often
    each node's search index catches up with Redis in the background."""

    # a customer who opened an article and started no conversation within this long counts as helped
    self_service_window_s: float = 1800.0
    # each node's search index reads the changes in Redis this often (and before every search)
    search_sync_s: float = 1.0


@dataclass(frozen=True)
class Config:
    """The whole settings tree, immutable once loaded so every component sees the same values."""

    data_dir: str = "./var"
    http: HttpConfig = field(default_factory=HttpConfig)
    log: LogConfig = field(default_factory=LogConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    cors: CorsConfig = field(default_factory=CorsConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    knowledge: KnowledgeConfig = field(default_factory=KnowledgeConfig)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()


def default_config_path() -> Path:
    """``config.yaml`` beside the package tree (the repository root)."""
    return Path(__file__).resolve().parent.parent / "config.yaml"


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the settings tree: defaults, then the YAML file, then ``SEGUE_*``, then ``overrides``.

    ``overrides`` maps dotted paths to values (used by the CLI and by tests).
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    file_path = Path(path) if path is not None else default_config_path()
    if path is not None or file_path.exists():
        try:
            text = file_path.read_text()
        except OSError as exc:
            raise ConfigError(Message("cannot read config file {file}: {reason}", file=str(file_path), reason=exc.strerror)) from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(Message("config file {file} is not valid YAML: {reason}", file=str(file_path), reason=str(exc))) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(Message("config file {file} must hold a mapping of settings", file=str(file_path)))
        raw = loaded or {}

    types_by_path = _setting_types()
    for dotted, env_name in env_names().items():
        if env_name in environ:
            text = environ[env_name]
            if types_by_path[dotted] is str:
                value: Any = text  # text settings are taken verbatim ("segue:" is not YAML's mapping)
            else:
                try:
                    value = yaml.safe_load(text) if text != "" else ""
                except yaml.YAMLError:
                    value = text
            _set_dotted(raw, dotted, value)
    for env_name in environ:
        if env_name.startswith(ENV_PREFIX) and env_name not in env_names().values():
            if env_name in _NON_SETTING_ENV:
                continue
            raise ConfigError(Message(
                "unknown setting in environment: {name} (known: see config.yaml; "
                "the name is SEGUE_ + the upper-cased dotted path)", name=env_name,
            ))
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    config = _build(Config, raw, "")
    _validate(config)
    return config


_LOG_LEVELS = ("debug", "info", "warning", "error")


def _validate(config: Config) -> None:
    """Checks that a type alone cannot express."""
    if config.log.level.lower() not in _LOG_LEVELS:
        raise ConfigError(Message("setting {setting} must be one of {choices}, got {value}", setting="log.level",
                                  choices=", ".join(_LOG_LEVELS), value=repr(config.log.level)))
    if config.log.format not in ("text", "json"):
        raise ConfigError(Message("setting {setting} must be {first} or {second}, got {value}", setting="log.format",
                                  first="text", second="json", value=repr(config.log.format)))
    if not 0 <= config.http.port <= 65535:
        raise ConfigError(Message("setting {setting} must be {low}-{high}, got {value}", setting="http.port", low=0,
                                  high=65535, value=config.http.port))
    url = config.cluster.internal_url
    if url and (not re.fullmatch(r"https?://[^/?#\s]+/?", url)):
        raise ConfigError(Message("setting cluster.internal_url must be http(s)://host[:port] (how the other nodes "
                                  "reach this one, no path), got {value}", value=repr(url)))
    lo, hi = config.media.udp_port_min, config.media.udp_port_max
    if (lo or hi) and not (1024 <= lo <= hi <= 65535):
        raise ConfigError(Message(
            "settings media.udp_port_min/max must both be 0, or 1024 <= min <= max <= 65535; got {low}..{high}",
            low=lo, high=hi,
        ))
    for name, value in dataclasses.asdict(config.limits).items():
        if isinstance(value, (int, float)) and value < 0:
            raise ConfigError(Message("setting {setting} must be 0 or more, got {value}", setting="limits." + name,
                                      value=value))
    if not 0 <= config.media.receive_batch_ms <= 20:
        raise ConfigError(Message("setting {setting} must be {low}-{high} (ms), got {value}",
                                  setting="media.receive_batch_ms", low=0, high=20, value=config.media.receive_batch_ms))
    for key in ("customer_origins", "agent_origins"):
        for origin in getattr(config.cors, key):
            problem = _origin_problem(origin, allow_any=key == "customer_origins")
            if problem:
                raise ConfigError(Message("setting {setting} holds {value}: {problem}", setting="cors." + key,
                                          value=repr(origin), problem=problem))
    w = config.webhooks
    if any(s <= 0 for s in w.retry_schedule_s):
        raise ConfigError(Message("setting webhooks.retry_schedule_s must hold waits above 0 s, got {value}",
                                  value=w.retry_schedule_s))
    if not 0 <= w.jitter < 1:
        raise ConfigError(Message("setting webhooks.jitter must be from 0 up to (not including) 1, got {value}",
                                  value=w.jitter))
    if w.timeout_s <= 0 or w.concurrency < 1 or w.endpoint_concurrency < 1 or w.claim_idle_s <= 0 \
            or w.refresh_s <= 0 or w.keep_days <= 0 or w.deliveries_kept < 1:
        raise ConfigError(Message("settings webhooks.timeout_s, claim_idle_s, refresh_s and keep_days must be above 0, "
                                  "and webhooks.concurrency, endpoint_concurrency and deliveries_kept at least 1"))
    for key in ("login_window_s", "login_failures_per_account", "login_failures_per_ip", "login_max_delay_s"):
        if getattr(config.auth, key) < 1:
            raise ConfigError(Message("setting {setting} must be 1 or more, got {value}", setting="auth." + key,
                                      value=getattr(config.auth, key)))
    if config.redis.appendfsync not in ("everysec", "always"):
        raise ConfigError(Message("setting {setting} must be {first} or {second}, got {value}", setting="redis.appendfsync",
                                  first="everysec", second="always", value=repr(config.redis.appendfsync)))
    for entry in config.redis.sentinels:
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(Message("setting redis.sentinels holds {value}: write each sentinel as host:port",
                                      value=repr(entry)))
    c = config.cluster
    if c.heartbeat_s <= 0 or c.node_ttl_s < 2 * c.heartbeat_s:
        raise ConfigError(Message("setting cluster.node_ttl_s must be at least twice cluster.heartbeat_s (above 0), "
                                  "got {ttl} and {heartbeat}", ttl=c.node_ttl_s, heartbeat=c.heartbeat_s))
    if c.reassign_after_s < 0 or c.drain_timeout_s < 0 or c.forward_timeout_s <= 0:
        raise ConfigError(Message("settings cluster.reassign_after_s and drain_timeout_s must be 0 or more, "
                                  "forward_timeout_s above 0"))
    if c.node_id and not all(ch.isalnum() or ch in "-_." for ch in c.node_id):
        raise ConfigError(Message("setting cluster.node_id may hold letters, digits, - _ and . only, got {value}",
                                  value=repr(c.node_id)))
    k = config.knowledge
    if k.self_service_window_s <= 0 or k.search_sync_s <= 0:
        raise ConfigError(Message("settings knowledge.self_service_window_s and knowledge.search_sync_s must be "
                                  "above 0, got {window} and {sync}", window=k.self_service_window_s,
                                  sync=k.search_sync_s))
    names = {q.name for q in config.routing.queues}
    if config.routing.default_queue not in names:
        raise ConfigError(Message("setting routing.default_queue names {value}, not one of routing.queues",
                                  value=repr(config.routing.default_queue)))
    for q in config.routing.queues:
        if q.overflow_queue and q.overflow_queue not in names:
            raise ConfigError(Message("setting {setting} names unknown queue {value}",
                                      setting="routing.queues[" + q.name + "].overflow_queue", value=repr(q.overflow_queue)))


def _origin_problem(origin: str, allow_any: bool) -> str:
    """Why ``origin`` cannot be an entry of a cors list ("" when it can): browsers send
    ``scheme://host[:port]``, lower-case, with no path, and entries are compared as text."""
    if origin == "*":
        return "" if allow_any else Message('the agent surface cannot be opened to any origin ("*"): list the origins')
    scheme, sep, rest = origin.partition("://")
    if not sep or scheme not in ("http", "https") or not rest:
        return Message("an origin is scheme://host[:port] with scheme http or https, e.g. https://shop.example")
    if "/" in rest or "?" in rest or "#" in rest:
        return Message("an origin has no path, not even a trailing slash, e.g. https://shop.example")
    if origin != origin.lower():
        return Message("write the origin in lower case, as browsers send it")
    return ""


# Variables that start with SEGUE_ but are not settings.
_NON_SETTING_ENV = frozenset({"SEGUE_CONFIG"})


def _setting_types() -> dict[str, Any]:
    """Dotted path of every setting (sections included) -> its declared type."""
    found: dict[str, Any] = {}

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            dotted = f"{prefix}{f.name}"
            found[dotted] = hints[f.name]
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], dotted + ".")

    walk(Config, "")
    return found


def env_names() -> dict[str, str]:
    """Dotted path of every setting -> its environment variable name."""
    return {dotted: ENV_PREFIX + dotted.replace(".", "_").upper() for dotted in _setting_types()}


def as_dict(config: Any) -> Any:
    """The tree as plain data (what ``config.yaml`` holds)."""
    return dataclasses.asdict(config)


def _set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(Message("setting {setting} must be a mapping, got {value}", setting=where or "(top level)",
                                  value=type(raw).__name__))
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            path = f"{where}.{key}" if where else str(key)
            raise ConfigError(Message("unknown setting {setting} (known here: {known})", setting=path,
                                      known=", ".join(sorted(known))))
    kwargs = {}
    for name in known:
        if name in raw:
            path = f"{where}.{name}" if where else name
            kwargs[name] = _coerce(hints[name], raw[name], path)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(Message("setting {setting} must be a list, got {value}", setting=path, value=repr(value)))
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_t, val_t = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(Message("setting {setting} must be a mapping, got {value}", setting=path, value=repr(value)))
        return {_coerce(key_t, k, path): _coerce(val_t, v, f"{path}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"setting {path}: union types are not supported in Config")  # a bug in Config, not in a file
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(Message("setting {setting} must be true or false, got {value}", setting=path, value=repr(value)))
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(Message("setting {setting} must be a whole number, got {value}", setting=path,
                                  value=repr(value)))
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(Message("setting {setting} must be a number, got {value}", setting=path, value=repr(value)))
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(Message("setting {setting} must be text, got {value}", setting=path, value=repr(value)))
    raise ConfigError(f"setting {path}: unsupported type {hint!r}")
