"""Who may call, how much they may send, and which URLs the server will fetch for them.

- API keys: bearer tokens from the args, a file or an environment variable, compared in
  constant time.
- Body limit: an ASGI middleware that refuses a body over ``max_upload_bytes`` (by its
  Content-Length, and by counting when it is chunked) before any of it is parsed.
- Remote URLs: fetched only when allowed, only http(s), and never from loopback, private,
  link-local or other non-public addresses. The host is resolved once, every address is
  checked, and the connection goes to the checked address (so a DNS answer that changes
  between check and connect cannot redirect it); redirects are not followed.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import socket
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

from ltx_ray.serve.protocol import APIError

Resolver = Callable[[str, int], list[str]]


class ApiKeys:
    """The accepted bearer tokens; empty means the endpoint is open."""

    def __init__(self, keys: list[str]):
        self._keys = [k.encode() for k in keys if k]

    @classmethod
    def load(cls, keys: list[str], file: str | None, env: str | None) -> ApiKeys:
        """Keys from the args, a file (one per line, # comments) and an env var (comma-separated)."""
        found = list(keys)
        if file:
            with open(file, encoding="utf-8") as fh:
                found += [line.strip() for line in fh if line.strip() and not line.lstrip().startswith("#")]
        if env and os.environ.get(env):
            found += [k.strip() for k in os.environ[env].split(",") if k.strip()]
        return cls(found)

    @property
    def required(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: str | None) -> None:
        """Raise 401 unless ``Authorization: Bearer KEY`` names an accepted key."""
        if not self._keys:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise APIError(401, "missing API key: send 'Authorization: Bearer YOUR_KEY'", code="missing_api_key")
        given = token.strip().encode()
        # compare_digest against every key, no early exit, so timing says nothing about which
        # key (or how much of one) matched.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise APIError(401, "invalid API key", code="invalid_api_key")


class BodyTooLarge(Exception):
    pass


# How much of an oversized body is read and dropped so that the client reads the 413.
DRAIN_BYTES = 256 * 2**20


async def _drain(receive, limit: int) -> None:
    seen = 0
    while seen <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with a 413 error envelope."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            # A client that asked "Expect: 100-continue" is told now and never sends the body.
            # Any other client is still sending: answering and closing now resets its
            # connection before it reads the 413 (Python's urllib), so the body is read and
            # dropped first, up to DRAIN_BYTES.
            if headers.get(b"expect", b"").lower() != b"100-continue":
                await _drain(receive, DRAIN_BYTES)
            return await self._refuse(send)
        seen = 0

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge()
            return message

        try:
            await self.app(scope, counting_receive, send)
        except BodyTooLarge:
            await self._refuse(send)

    async def _refuse(self, send):
        error = APIError(413, f"request body is larger than {self.max_bytes} bytes; send smaller files",
                         code="request_too_large")
        body = json.dumps(error.envelope()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def system_resolver(host: str, port: int) -> list[str]:
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def public_address(ip: str) -> bool:
    """True only for globally routable unicast addresses."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


class RemoteFetcher:
    """Fetches http(s) URLs named in requests, under the server's policy."""

    def __init__(self, allow: bool, max_bytes: int, resolver: Resolver = system_resolver, timeout_s: float = 15.0):
        self.allow = allow
        self.max_bytes = max_bytes
        self.resolver = resolver
        self.timeout_s = timeout_s

    def check(self, url: str, param: str) -> tuple[str, str]:
        """Validate ``url``; returns (url to connect to, host name). Raises a 400 naming ``param``."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise APIError(400, f"{param}: {scheme or 'a path'!s} URLs are not accepted; give an https:// URL "
                           "or upload the file as a part", param=param, code="unsupported_url")
        if not self.allow:
            raise APIError(400, f"{param}: this server does not fetch remote URLs; upload the file as a part",
                           param=param, code="remote_urls_disabled")
        host = parts.hostname
        if not host:
            raise APIError(400, f"{param}: {url!r} has no host", param=param, code="invalid_url")
        if parts.username or parts.password:
            raise APIError(400, f"{param}: URLs with credentials are not accepted", param=param, code="invalid_url")
        port = parts.port or (443 if scheme == "https" else 80)
        try:
            addresses = self.resolver(host, port)
        except (OSError, UnicodeError):
            raise APIError(400, f"{param}: cannot resolve host {host!r}", param=param, code="invalid_url") from None
        if not addresses:
            raise APIError(400, f"{param}: cannot resolve host {host!r}", param=param, code="invalid_url")
        for ip in addresses:
            if not public_address(ip):
                raise APIError(400, f"{param}: {host!r} resolves to {ip}, a loopback, private, link-local or "
                               "reserved address; only public addresses are fetched", param=param, code="forbidden_url")
        ip = addresses[0]
        netloc = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        return urlunsplit((scheme, netloc, parts.path or "/", parts.query, "")), host

    async def fetch(self, url: str, param: str) -> bytes:
        """Check, then download at most ``max_bytes`` from the checked address."""
        import httpx

        target, host = self.check(url, param)
        extensions = {"sni_hostname": host} if target.startswith("https") else {}
        try:
            async with httpx.AsyncClient(follow_redirects=False, timeout=self.timeout_s, trust_env=False) as client:
                async with client.stream("GET", target, headers={"Host": host}, extensions=extensions) as resp:
                    if resp.status_code != 200:
                        raise APIError(400, f"{param}: {url!r} answered HTTP {resp.status_code} (redirects are not "
                                       "followed); give the final URL of the file", param=param, code="fetch_failed")
                    data = bytearray()
                    async for chunk in resp.aiter_bytes():
                        data += chunk
                        if len(data) > self.max_bytes:
                            raise APIError(413, f"{param}: {url!r} is larger than {self.max_bytes} bytes",
                                           param=param, code="request_too_large")
                    return bytes(data)
        except httpx.HTTPError as exc:
            raise APIError(400, f"{param}: cannot fetch {url!r} ({type(exc).__name__})", param=param,
                           code="fetch_failed") from None
