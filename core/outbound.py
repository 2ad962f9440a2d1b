"""Outbound HTTP to addresses users give us (webhook receivers, catalogue feeds), SSRF-safe.

``address_check`` parses the URL (``http``/``https`` only, a host, no userinfo), resolves
the host and refuses it when any of its addresses is not allowed. ``outbound_get`` and
``outbound_post`` check the URL again and then connect to the very address that was checked
(never resolving the name a second time, so DNS rebinding cannot swap it), sending the name in
the ``Host`` header and, for https, as SNI and as the name the certificate must match.
Redirects are never followed; environment proxies and ``.netrc`` are ignored.

Always refused: link-local (169.254.0.0/16 — cloud metadata — and fe80::/10), multicast,
unspecified, "this network" (0.0.0.0/8), the IETF protocol assignments (192.0.0.0/24), reserved
and site-local addresses, and the cloud metadata and platform addresses outside those ranges
(``_CLOUD_SERVICES``: Azure's 168.63.129.16, Alibaba's 100.100.100.200, the IPv6 metadata
addresses of AWS, Google Cloud and Scaleway). These are listed explicitly, so the answer does
not depend on the Python version's ``ipaddress`` tables. Refused unless
``allow_private``: private, loopback and shared (100.64.0.0/10) addresses, and anything else
that is not globally reachable. An IPv4-mapped IPv6 address (``::ffff:127.0.0.1``) and the
IPv4 address inside a 6to4 one are judged as the IPv4 address they carry.

The errors here carry no API code: each caller maps them (the webhook API answers 400
``INVALID_WEBHOOK_URL``; a delivery records the refusal as a failed attempt).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util import Timeout

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_ALWAYS_REFUSED = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",  # "this network": 0.0.0.0 reaches the local host on Linux
        "169.254.0.0/16",  # link-local, cloud metadata (169.254.169.254)
        # IETF protocol assignments (RFC 6890), Oracle Cloud Classic's metadata at 192.0.0.192
        # among them: the whole /24, whatever this interpreter's ipaddress says (before
        # Python 3.11.10/3.12.4 only 192.0.0.0/29 and .170/31 were not global).
        "192.0.0.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
        "::/128",
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
# Metadata and platform services of cloud providers outside the link-local ranges above,
# refused even where private addresses are allowed (each one is private, shared or, for
# Azure's, a public address that only the platform answers on).
_CLOUD_SERVICES = tuple(
    ipaddress.ip_address(address)
    for address in (
        "168.63.129.16",  # Azure: the WireServer (agent, extensions, DNS), "What is IP address 168.63.129.16?"
        "100.100.100.200",  # Alibaba Cloud ECS instance metadata
        "fd00:ec2::254",  # AWS EC2 instance metadata over IPv6 (EC2 User Guide, "Retrieve instance metadata")
        "fd00:ec2::23",  # AWS EKS Pod Identity Agent over IPv6 (its IPv4 is link-local 169.254.170.23)
        "fd20:ce::254",  # Google Compute Engine metadata server over IPv6
        "fd00:42::42",  # Scaleway instance metadata over IPv6 (its IPv4 is link-local 169.254.42.42)
    )
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT


class OutboundError(Exception):
    """An outbound request that did not get an answer (the base of the errors below)."""


class OutboundAddressError(OutboundError):
    """The URL is not one we may call: its scheme, its form, or an address its host resolves to."""


class OutboundUnresolvableError(OutboundAddressError):
    """The host does not resolve (now): maybe a passing DNS failure, unlike a forbidden address."""


class OutboundNetworkError(OutboundError):
    """Connecting, sending or reading failed (refused, reset, TLS, timed out)."""

    def __init__(self, message: str, *, timed_out: bool = False):
        super().__init__(message)
        self.timed_out = timed_out


class OutboundTooLargeError(OutboundError):
    """The response body is larger than the caller's ``max_bytes``."""


@dataclass(frozen=True)
class CheckedUrl:
    url: str  # normalised (IDNA host), as it will be requested
    scheme: str
    hostname: str  # without brackets, lower case
    port: int
    netloc: str  # the Host header
    ip: IPAddress  # the address we connect to: the first one the host resolved to (IPv4-mapped: the IPv4)


@dataclass(frozen=True)
class OutboundResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    truncated: bool  # the body was cut at max_bytes (only when the caller asked for that)


def address_allowed(ip: IPAddress, *, allow_private: bool) -> bool:
    """Whether ``ip`` may be called (see the module docstring for the rules)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_allowed(ip.ipv4_mapped, allow_private=allow_private)
        if ip.sixtofour is not None and not address_allowed(ip.sixtofour, allow_private=allow_private):
            return False
    if ip in _CLOUD_SERVICES or any(ip in net for net in _ALWAYS_REFUSED if net.version == ip.version):
        return False
    if ip.is_loopback:  # before is_reserved: ::1 lies in the reserved ::/8
        return allow_private
    if ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return False
    if ip.is_global:
        return True
    return allow_private and (ip.is_private or ip.is_loopback or ip in _SHARED)


def address_check(url: str, *, allow_private: bool) -> CheckedUrl:
    """Parse and resolve ``url``; refuse it unless every address its host resolves to is allowed.

    Raises ``OutboundAddressError`` (a resolution failure included: the caller learns the
    URL is unusable now, not why the network said so).
    """
    if not isinstance(url, str) or not url:
        raise OutboundAddressError("no URL")
    try:
        prepared = requests.PreparedRequest()
        prepared.prepare_url(url, None)  # IDNA-encodes the host, as requests will send it
        parts = urlsplit(prepared.url)
        port = parts.port
    except (requests.RequestException, ValueError, UnicodeError) as exc:
        raise OutboundAddressError(f"malformed URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise OutboundAddressError(f"scheme {scheme!r} is not http or https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise OutboundAddressError("credentials in the URL")
    hostname = (parts.hostname or "").lower()
    if not hostname:
        raise OutboundAddressError("no host")
    if port is None:
        port = 443 if scheme == "https" else 80
    addresses = _resolve(hostname, port)
    for ip in addresses:
        if not address_allowed(ip, allow_private=allow_private):
            raise OutboundAddressError(f"{hostname} resolves to {ip}, which may not be called")
    return CheckedUrl(
        url=prepared.url,
        scheme=scheme,
        hostname=hostname,
        port=port,
        netloc=parts.netloc,
        ip=_unmapped(addresses[0]),
    )


def _unmapped(ip: IPAddress) -> IPAddress:
    # ::ffff:a.b.c.d is a.b.c.d: connect over IPv4 (an IPv6 socket may not be dual-stack).
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _resolve(hostname: str, port: int) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise OutboundUnresolvableError(f"{hostname} does not resolve: {exc}") from exc
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])  # drop an IPv6 zone id
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise OutboundUnresolvableError(f"{hostname} has no IP address")
    return addresses


class _PinnedAddressAdapter(HTTPAdapter):
    """Connects to the checked IP address whatever the URL's host resolves to now.

    The pool is keyed by the IP; for https the TLS handshake sends the host name as SNI and
    the certificate is verified against that name (``server_hostname`` / ``assert_hostname``).
    """

    def __init__(self, checked: CheckedUrl):
        self.checked = checked
        super().__init__(max_retries=0)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        if urlsplit(request.url).hostname != self.checked.hostname:
            # Only the checked URL is ever sent through this adapter (redirects are not
            # followed); anything else is a programming error, never a silent re-resolution.
            raise OutboundAddressError(f"{request.url} is not the checked URL")
        host_params["host"] = str(self.checked.ip)
        host_params["port"] = self.checked.port
        if self.checked.scheme == "https":
            pool_kwargs["server_hostname"] = self.checked.hostname
            pool_kwargs["assert_hostname"] = self.checked.hostname
        return host_params, pool_kwargs


def outbound_request(
    method: str,
    url: str,
    *,
    allow_private: bool,
    timeout: tuple[float, float],
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    max_bytes: int | None = None,
    truncate: bool = False,
    verify: bool | str = True,
) -> OutboundResponse:
    """Check ``url`` and send one request to the checked address.

    ``timeout`` is ``(connect, total)`` in seconds: connecting may take ``connect``; the whole
    exchange (connect, send, wait and read) is cut at ``total`` — between the reads of the
    body as well as within each one. Never follows a redirect (a 3xx is returned as it is).
    The body is read up to ``max_bytes``: past it, ``OutboundTooLargeError``, or with
    ``truncate`` the first ``max_bytes`` and ``truncated=True``. ``verify`` is requests' own
    (a CA bundle path for tests).
    """
    checked = address_check(url, allow_private=allow_private)
    connect_timeout, total_timeout = timeout
    deadline = time.monotonic() + total_timeout
    send_headers = {"Host": checked.netloc, **(headers or {})}
    session = requests.Session()
    session.trust_env = False  # no proxies, .netrc or CA bundle from the environment
    session.mount("http://", _PinnedAddressAdapter(checked))
    session.mount("https://", _PinnedAddressAdapter(checked))
    try:
        response = session.request(
            method,
            checked.url,
            data=data,
            headers=send_headers,
            timeout=Timeout(connect=connect_timeout, read=total_timeout, total=total_timeout),
            allow_redirects=False,
            stream=True,
            verify=verify,
        )
        with response:
            body, truncated = _read_body(response, deadline=deadline, max_bytes=max_bytes, truncate=truncate)
            return OutboundResponse(
                status=response.status_code, headers=dict(response.headers), body=body, truncated=truncated
            )
    except OutboundError:
        raise
    except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError) as exc:
        raise OutboundNetworkError(f"timed out: {exc}", timed_out=True) from exc
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise OutboundNetworkError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        session.close()


def _read_body(
    response: requests.Response, *, deadline: float, max_bytes: int | None, truncate: bool
) -> tuple[bytes, bool]:
    # read1: whatever one receive brings, so a peer that trickles its body is cut at the
    # deadline rather than holding us for as long as it keeps sending.
    chunks: list[bytes] = []
    size = 0
    while chunk := response.raw.read1(64 * 1024, decode_content=True):
        if time.monotonic() > deadline:
            raise OutboundNetworkError("timed out reading the response body", timed_out=True)
        chunks.append(chunk)
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            if not truncate:
                raise OutboundTooLargeError(f"the response is larger than {max_bytes} bytes")
            return b"".join(chunks)[:max_bytes], True
    return b"".join(chunks), False


def outbound_get(
    url: str, *, allow_private: bool, timeout: tuple[float, float], max_bytes: int | None = None, **kwargs: Any
) -> OutboundResponse:
    return outbound_request("GET", url, allow_private=allow_private, timeout=timeout, max_bytes=max_bytes, **kwargs)


def outbound_post(
    url: str,
    *,
    allow_private: bool,
    timeout: tuple[float, float],
    data: bytes,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> OutboundResponse:
    return outbound_request(
        "POST", url, allow_private=allow_private, timeout=timeout, data=data, headers=headers, **kwargs
    )
