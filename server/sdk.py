"""The SDK's URLs: one folder (``web/sdk/``) served under a versioned, a major and a plain path.

Why three paths for one folder: a customer's site that pins ``/sdk/<exact version>/`` with
Subresource Integrity needs bytes that never change under that URL, so browsers and CDNs may keep
them for a year (``immutable``); a site that wants fixes without editing its snippet uses the
major line ``/sdk/v1/`` (short cache, revalidated); Segue's own pages use plain ``/sdk/``, which
is always revalidated so an upgraded node is picked up at once. No build step: every path serves
the same files, and the modules import each other relatively, so a module graph stays on the path
it was loaded from.

The version is written once, in ``web/sdk/package.json`` (the npm package's version), and must
equal the Python package's version (tests/unit/test_sdk_version.py checks it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Awaitable, Callable

from aiohttp import hdrs, web

SDK_DIR = Path(__file__).resolve().parent.parent / "web" / "sdk"

#: The SDK's API line: ``/sdk/v1/`` follows every release of it. A breaking change to the SDK's
#: public API (web/sdk/*.d.ts) starts ``v2``.
SDK_MAJOR = "v1"

IMMUTABLE = "public, max-age=31536000, immutable"
MAJOR_MAX_AGE_S = 300
MAJOR_CACHE = f"public, max-age={MAJOR_MAX_AGE_S}"
PLAIN_CACHE = "no-cache"

_VERSION_SEGMENT = re.compile(r"^(\d+\.\d+\.\d+[0-9A-Za-z.+-]*|v\d+)$")


class SdkPackageError(RuntimeError):
    """web/sdk/package.json is missing or has no usable version."""


def sdk_version(sdk_dir: Path = SDK_DIR) -> str:
    """The SDK's exact version, from ``web/sdk/package.json``."""
    path = sdk_dir / "package.json"
    try:
        version = json.loads(path.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SdkPackageError(f"cannot read the SDK version from {path}: {exc} (it must hold \"version\": \"X.Y.Z\")") from None
    if not isinstance(version, str) or not _VERSION_SEGMENT.match(version) or version.startswith("v"):
        raise SdkPackageError(f"{path}: \"version\" must look like 1.2.3, got {version!r}")
    return version


def sdk_paths(version: str | None = None) -> tuple[str, str]:
    """The versioned and the major URL prefix, e.g. ``("/sdk/0.1.0/", "/sdk/v1/")``."""
    return f"/sdk/{version or sdk_version()}/", f"/sdk/{SDK_MAJOR}/"


def add_sdk_routes(app: web.Application, sdk_dir: Path = SDK_DIR) -> None:
    """Serve ``sdk_dir`` at ``/sdk/<version>/`` and ``/sdk/v1/`` with their cache headers.

    Call it before CORS is applied (server/cors.py covers every route under ``/sdk/``). Plain
    ``/sdk/`` is the pages' static route (server/app.py); this only sets its cache header.
    Another version or major than this node's gets a 404 that names the ones it serves.
    """
    version = sdk_version(sdk_dir)
    exact, major = sdk_paths(version)
    cache_of: dict[web.AbstractResource, str] = {
        app.router.add_static(exact, sdk_dir, append_version=False): IMMUTABLE,
        app.router.add_static(major, sdk_dir, append_version=False): MAJOR_CACHE,
    }
    app.router.add_get(r"/sdk/{release:(\d+\.\d+\.\d+[0-9A-Za-z.+-]*|v\d+)}/{tail:.*}", _other_release(exact, major))

    async def cache_headers(request: web.Request, response: web.StreamResponse) -> None:
        if response.status not in (200, 206, 304):
            return
        route = request.match_info.route
        resource = route.resource if route is not None else None
        cache = cache_of.get(resource) if resource is not None else None
        if cache is None and request.path.startswith("/sdk/") and _is_static(resource):
            cache = PLAIN_CACHE
        if cache is not None:
            response.headers[hdrs.CACHE_CONTROL] = cache

    app.on_response_prepare.append(cache_headers)


def _is_static(resource: web.AbstractResource | None) -> bool:
    return isinstance(resource, web.StaticResource)


def _other_release(exact: str, major: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise web.HTTPNotFound(
            text=(
                f"this Segue node serves SDK {request.match_info['release']!r} no longer (or not yet): "
                f"it serves {exact} (pin it with the integrity hashes from `python -m server.sri`) "
                f"and {major} (follows this node's releases)\n"
            )
        )

    return handler
