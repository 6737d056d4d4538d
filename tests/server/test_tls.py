"""TLS and mutual TLS, with certificates made in the test, on the gRPC and the HTTP/JSON port."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.client import TranslatorClient, channel_credentials
from tests.server.running_server import start_server


def issue(directory: Path, name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, server: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    certificate = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (directory / f"{name}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return certificate, key


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certificates")
    ca = issue(directory, "ca", None)
    issue(directory, "server", ca, server=True)
    issue(directory, "client", ca)
    issue(directory, "stranger", issue(directory, "other-ca", None))
    return directory


def test_tls_serves_clients_that_trust_the_certificate_and_no_plaintext(tmp_path: Path, certificates: Path) -> None:
    running = start_server(tmp_path, "--models", "rnn-en-de", "--tls-cert-file", str(certificates / "server.crt"), "--tls-key-file", str(certificates / "server.key"), wait=False)
    try:
        client = TranslatorClient(running.target.replace("127.0.0.1", "localhost"), credentials=channel_credentials(certificates / "ca.crt", None, None))
        client.wait_until_serving(120)
        assert client.translate(["A dog runs."]).translations[0].text
        with pytest.raises(grpc.RpcError) as plaintext:
            TranslatorClient(running.target, timeout=5).translate(["A dog runs."])
        assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
        # the HTTP/JSON port: the same certificate, HTTPS only
        https = running.http_url.replace("http://127.0.0.1", "https://localhost")
        trusting = ssl.create_default_context(cafile=str(certificates / "ca.crt"))
        with urllib.request.urlopen(https + "/v1/models", timeout=30, context=trusting) as answer:
            assert answer.status == 200 and b"rnn-en-de" in answer.read()
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP to the HTTPS port
            urllib.request.urlopen(running.http_url + "/v1/models", timeout=5)
    finally:
        assert running.stop() == 0


def test_mutual_tls_refuses_clients_without_a_certificate_from_the_ca(tmp_path: Path, certificates: Path) -> None:
    c = certificates
    running = start_server(
        tmp_path, "--models", "rnn-en-de", "--tls-cert-file", str(c / "server.crt"), "--tls-key-file", str(c / "server.key"), "--tls-client-ca-file", str(c / "ca.crt"), wait=False
    )
    target = running.target.replace("127.0.0.1", "localhost")
    try:
        trusted = TranslatorClient(target, credentials=channel_credentials(c / "ca.crt", c / "client.crt", c / "client.key"))
        trusted.wait_until_serving(120)
        assert trusted.translate(["A dog runs."]).translations[0].text
        for certificate in (None, "stranger"):
            credentials = channel_credentials(c / "ca.crt", c / f"{certificate}.crt" if certificate else None, c / f"{certificate}.key" if certificate else None)
            with pytest.raises(grpc.RpcError) as refused:
                TranslatorClient(target, timeout=5, credentials=credentials).translate(["A dog runs."])
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, certificate
        https = running.http_url.replace("http://127.0.0.1", "https://localhost") + "/v1/models"
        with_certificate = ssl.create_default_context(cafile=str(c / "ca.crt"))
        with_certificate.load_cert_chain(c / "client.crt", c / "client.key")
        with urllib.request.urlopen(https, timeout=30, context=with_certificate) as answer:
            assert answer.status == 200
        with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
            urllib.request.urlopen(https, timeout=5, context=ssl.create_default_context(cafile=str(c / "ca.crt"))).read()
    finally:
        assert running.stop() == 0


def test_half_a_tls_configuration_is_refused_at_start(tmp_path: Path, certificates: Path) -> None:
    running = start_server(tmp_path, "--tls-cert-file", str(certificates / "server.crt"), wait=False)
    assert running.process.wait(60) == 1
    assert "TLS needs both --tls-cert-file and --tls-key-file" in running.output()
