"""core.outbound: which addresses may be called, and that the call goes to the checked one."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core.outbound import (
    OutboundAddressError,
    OutboundNetworkError,
    OutboundTooLargeError,
    address_check,
    outbound_get,
    outbound_post,
)
from tests.servers import Reply, fake_dns, recording_server, tarpit


@pytest.fixture
def dns(monkeypatch):
    return fake_dns(monkeypatch)


@pytest.mark.parametrize(
    ("url", "allow_private"),
    [
        ("http://127.0.0.1/hook", False),
        ("http://localhost:8000/hook", False),
        ("http://10.1.2.3/", False),
        ("http://192.168.0.10/", False),
        ("http://100.64.0.1/", False),  # shared address space (carrier-grade NAT)
        ("http://[::1]/", False),
        ("http://[fd00::1]/", False),
        ("http://[::ffff:127.0.0.1]/", False),  # IPv4-mapped loopback
        ("http://[::ffff:10.0.0.1]/", False),
        ("http://169.254.169.254/latest/meta-data/", True),  # cloud metadata: even when private is allowed
        ("http://[::ffff:169.254.169.254]/", True),
        ("http://[fe80::1]/", True),
        ("http://0.0.0.0:8000/", True),
        ("http://0.1.2.3/", True),
        ("http://224.0.0.1/", True),
        ("http://240.0.0.1/", True),
        ("http://255.255.255.255/", True),
        ("http://[ff02::1]/", True),
        ("http://[::]/", True),
        ("http://[2002:a9fe:a9fe::1]/", True),  # 6to4 wrapping 169.254.169.254
        # The IETF protocol assignments, whole (this interpreter calls 192.0.0.8-255 global).
        ("http://192.0.0.8/", True),
        ("http://192.0.0.192/latest/", True),  # Oracle Cloud Classic metadata
        ("http://192.0.0.255/", True),
        ("http://[::ffff:192.0.0.9]/", True),
        # Cloud metadata and platform addresses outside link-local, even when private is allowed.
        ("http://168.63.129.16/machine?comp=goalstate", True),  # Azure WireServer (a global address)
        ("http://[::ffff:168.63.129.16]/", True),
        ("http://100.100.100.200/latest/meta-data/", True),  # Alibaba Cloud
        ("http://[fd00:ec2::254]/latest/meta-data/", True),  # AWS IPv6
        ("http://[fd00:ec2::23]/", True),  # AWS EKS Pod Identity Agent IPv6
        ("http://[fd20:ce::254]/computeMetadata/v1/", True),  # Google Cloud IPv6
        ("http://[fd00:42::42]/", True),  # Scaleway IPv6
        ("ftp://example.com/file", True),
        ("file:///etc/passwd", True),
        ("gopher://example.com/", True),
        ("http://user:secret@93.184.215.14/", True),
        ("http:///path-only", True),
        ("not a url", True),
        ("", True),
    ],
)
def test_refused_addresses(url, allow_private):
    with pytest.raises(OutboundAddressError):
        address_check(url, allow_private=allow_private)


def test_hostname_resolving_to_a_private_address_is_refused(dns):
    dns["hook.example.com"] = ["10.0.0.7"]
    with pytest.raises(OutboundAddressError):
        address_check("https://hook.example.com/x", allow_private=False)


def test_hostname_with_any_forbidden_address_is_refused(dns):
    dns["hook.example.com"] = ["93.184.215.14", "127.0.0.1"]
    with pytest.raises(OutboundAddressError):
        address_check("https://hook.example.com/x", allow_private=False)
    dns["meta.example.com"] = ["127.0.0.1", "169.254.169.254"]
    with pytest.raises(OutboundAddressError):
        address_check("https://meta.example.com/x", allow_private=True)


def test_unresolvable_hostname_is_refused(dns):
    dns["nowhere.example.com"] = []
    with pytest.raises(OutboundAddressError):
        address_check("https://nowhere.example.com/x", allow_private=True)


def test_public_address_is_allowed_and_pinned(dns):
    dns["hook.example.com"] = ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    checked = address_check("https://Hook.Example.com:8443/x?y=1", allow_private=False)
    assert checked.hostname == "hook.example.com"
    assert checked.port == 8443
    assert str(checked.ip) == "93.184.215.14"
    assert checked.scheme == "https"


def test_addresses_next_to_the_refused_cloud_ones_are_not_refused(dns):
    # The explicit list is of addresses, not of their networks.
    dns["near.example.com"] = ["168.63.129.17", "192.0.1.1"]
    assert str(address_check("https://near.example.com/", allow_private=False).ip) == "168.63.129.17"
    assert str(address_check("http://100.100.100.201/", allow_private=True).ip) == "100.100.100.201"
    assert str(address_check("http://[fd00:ec2::1]/", allow_private=True).ip) == "fd00:ec2::1"


def test_private_and_loopback_allowed_when_asked():
    assert str(address_check("http://127.0.0.1:9/", allow_private=True).ip) == "127.0.0.1"
    assert str(address_check("http://10.0.0.1/", allow_private=True).ip) == "10.0.0.1"
    assert str(address_check("http://[::ffff:127.0.0.1]/", allow_private=True).ip) == "127.0.0.1"
    assert str(address_check("http://[::1]/", allow_private=True).ip) == "::1"
    assert str(address_check("http://[fd00::1]/", allow_private=True).ip) == "fd00::1"


def test_request_goes_to_the_checked_address_even_if_the_name_rebinds(dns):
    """DNS rebinding: the name resolves to an allowed address when checked and to the cloud
    metadata address afterwards; the request still reaches the checked one, with its name in
    the Host header, and the name is resolved once only."""
    with recording_server([Reply(200, body=b"ok")]) as server:
        dns["hook.test"] = [["127.0.0.1"], ["169.254.169.254"]]
        response = outbound_post(
            f"http://hook.test:{server.port}/in?a=1",
            allow_private=True,
            timeout=(3, 10),
            data=b'{"x": 1}',
            headers={"Content-Type": "application/json"},
        )
    assert response.status == 200
    assert response.body == b"ok"
    assert dns.lookups["hook.test"] == 1
    [request] = server.received
    assert request.method == "POST"
    assert request.path == "/in?a=1"
    assert request.headers["Host"] == f"hook.test:{server.port}"
    assert request.body == b'{"x": 1}'


def test_redirects_are_not_followed():
    with recording_server() as target, recording_server([Reply(302, {"Location": f"{target.base}/x"})]) as server:
        response = outbound_get(f"{server.base}/", allow_private=True, timeout=(3, 10))
    assert response.status == 302
    assert response.headers["Location"] == f"{target.base}/x"
    assert target.received == []


def test_body_over_max_bytes_raises_or_is_truncated():
    with recording_server([Reply(200, body=b"x" * 5000), Reply(200, body=b"y" * 5000)]) as server:
        with pytest.raises(OutboundTooLargeError):
            outbound_get(f"{server.base}/big", allow_private=True, timeout=(3, 10), max_bytes=4096)
        response = outbound_get(f"{server.base}/big", allow_private=True, timeout=(3, 10), max_bytes=100, truncate=True)
    assert response.body == b"y" * 100
    assert response.truncated


def test_silent_peer_times_out():
    with tarpit() as port, pytest.raises(OutboundNetworkError) as caught:
        outbound_get(f"http://127.0.0.1:{port}/", allow_private=True, timeout=(1, 1))
    assert caught.value.timed_out


def test_refused_connection_is_a_network_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: the connection is refused
        with pytest.raises(OutboundNetworkError) as caught:
            outbound_get(f"http://127.0.0.1:{port}/", allow_private=True, timeout=(1, 1))
    assert not caught.value.timed_out


def _certificate(tmp_path, name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_path / f"{name}.pem"
    key_path = tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _tls_server_context(cert_path, key_path, seen_sni: list):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    lock = threading.Lock()

    def remember(sock, server_name, _context):
        with lock:
            seen_sni.append(server_name)

    context.sni_callback = remember
    return context


def test_https_sends_the_name_as_sni_and_verifies_the_certificate_against_it(tmp_path, dns):
    cert_path, key_path = _certificate(tmp_path, "hook.test")
    seen_sni: list = []
    with recording_server([Reply(204)], ssl_context=_tls_server_context(cert_path, key_path, seen_sni)) as server:
        dns["hook.test"] = ["127.0.0.1"]
        response = outbound_post(
            f"https://hook.test:{server.port}/in",
            allow_private=True,
            timeout=(3, 10),
            data=b"{}",
            verify=str(cert_path),
        )
    assert response.status == 204
    assert seen_sni == ["hook.test"]
    assert server.received[0].headers["Host"] == f"hook.test:{server.port}"


def test_https_certificate_for_another_name_is_refused(tmp_path, dns):
    cert_path, key_path = _certificate(tmp_path, "other.test")
    seen_sni: list = []
    with recording_server(ssl_context=_tls_server_context(cert_path, key_path, seen_sni)) as server:
        dns["hook.test"] = ["127.0.0.1"]
        with pytest.raises(OutboundNetworkError):
            outbound_post(
                f"https://hook.test:{server.port}/in",
                allow_private=True,
                timeout=(3, 10),
                data=b"{}",
                verify=str(cert_path),
            )
    assert server.received == []
