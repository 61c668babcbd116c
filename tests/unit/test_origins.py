"""The origin rule shared by HTTP and Socket.IO (signaling/origins.py): own origins, the two lists."""

from __future__ import annotations

from signaling import OriginPolicy, Surface, environ_own_origins, own_origins


def test_own_origins_from_host_forwarded_headers_and_public_url() -> None:
    assert own_origins("http", "127.0.0.1:8080") == {"http://127.0.0.1:8080", "https://127.0.0.1:8080"}
    # a proxy that says how the browser came wins over the guess
    assert own_origins("http", "10.0.0.5:8081", "https", "chat.example") == {
        "http://10.0.0.5:8081", "https://chat.example"}
    assert own_origins("http", "chat.example", "https, http") == {"http://chat.example", "https://chat.example"}
    # public_url: its origin, default ports dropped as browsers do
    assert "https://chat.example" in own_origins("http", None, public_url="https://chat.example:443/base/")
    assert own_origins("http", None) == set()


def test_environ_own_origins_reads_the_handshake() -> None:
    environ = {"wsgi.url_scheme": "http", "HTTP_HOST": "node:9000", "HTTP_X_FORWARDED_PROTO": "https"}
    assert environ_own_origins(environ) == {"http://node:9000", "https://node:9000"}


def test_policy_by_surface() -> None:
    policy = OriginPolicy(["*"], ["https://crm.example"])
    own = {"http://node:8080"}
    for surface in Surface:
        assert policy.allows(surface, None, own)  # no Origin: not a cross-origin page
        assert policy.allows(surface, "http://node:8080", own)
    assert policy.allows(Surface.CUSTOMER, "https://anyone.example", own)
    assert not policy.allows(Surface.AGENT, "https://anyone.example", own)
    assert policy.allows(Surface.AGENT, "https://crm.example", own)
    refused = policy.check(Surface.AGENT, "https://anyone.example", own, "/agent")
    assert refused is not None and refused.as_dict() == {
        "code": "origin_not_allowed",
        "message": "origin https://anyone.example is not allowed on /agent: add it to cors.agent_origins"}

    listed = OriginPolicy(["https://shop.example"], [])
    assert listed.allows(Surface.CUSTOMER, "https://shop.example", own)
    assert not listed.allows(Surface.CUSTOMER, "https://other.example", own)
    assert not listed.allows_somewhere("https://other.example", own)
    assert listed.allows_somewhere("https://shop.example", own)
