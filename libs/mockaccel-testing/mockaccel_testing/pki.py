"""Certificates and keys for one throwaway control plane.

Why not reuse anything: every control plane gets its own CA, so a kubeconfig left over from
an earlier run can never talk to a new one, and no state is shared between test sessions.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=7)
QEMU_USER_NET_HOST = "10.0.2.2"  # QEMU user networking: the host as the guest sees it
_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class CertPair:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ControlPlanePki:
    """Every file the components need."""

    ca: CertPair
    apiserver: CertPair
    admin: CertPair
    controller_manager: CertPair
    scheduler: CertPair
    apiserver_kubelet_client: CertPair  # the API server's identity towards kubelets
    service_account_key: Path
    service_account_pub: Path


def generate(directory: Path, service_ip: str) -> ControlPlanePki:
    """Write a CA, the apiserver serving cert, client certs and the service-account key."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mockaccel-test-ca")])
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    ca = _write(directory, "ca", ca_cert, ca_key)

    def leaf(name: str, common_name: str, organization: str | None = None, server: bool = False) -> CertPair:
        return _leaf(directory, name, ca_cert, ca_key, common_name, organization, server, service_ip)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key_path = directory / "sa.key"
    sa_pub_path = directory / "sa.pub"
    _write_private(sa_key_path, sa_key)
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return ControlPlanePki(
        ca=ca,
        apiserver=leaf("apiserver", "kube-apiserver", server=True),
        admin=leaf("admin", "mockaccel-admin", organization="system:masters"),
        controller_manager=leaf("controller-manager", "system:kube-controller-manager"),
        scheduler=leaf("scheduler", "system:kube-scheduler"),
        apiserver_kubelet_client=leaf("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
        service_account_key=sa_key_path,
        service_account_pub=sa_pub_path,
    )


def issue_client(
    ca: CertPair, directory: Path, name: str, common_name: str, organization: str | None = None
) -> CertPair:
    """A client certificate signed by an existing CA (e.g. a kubelet's system:node:<name>)."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TypeError(f"unsupported CA key type in {ca.key}")
    directory.mkdir(parents=True, exist_ok=True)
    return _leaf(directory, name, ca_cert, ca_key, common_name, organization, server=False)


def _leaf(
    directory: Path,
    name: str,
    ca_cert: x509.Certificate,
    ca_key: _PrivateKey,
    common_name: str,
    organization: str | None = None,
    server: bool = False,
    service_ip: str | None = None,
) -> CertPair:
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False)
    )
    if server:
        names: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes"),
            x509.DNSName("kubernetes.default"),
            x509.DNSName("kubernetes.default.svc"),
            x509.DNSName("kubernetes.default.svc.cluster.local"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            # Where a QEMU guest on user networking (slirp) reaches the host's loopback:
            # the controller in the emulated node talks to this API server there.
            x509.IPAddress(ipaddress.ip_address(QEMU_USER_NET_HOST)),
        ]
        if service_ip:
            names.append(x509.IPAddress(ipaddress.ip_address(service_ip)))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return _write(directory, name, builder.sign(ca_key, hashes.SHA256()), key)


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _write(directory: Path, name: str, cert: x509.Certificate, key: _PrivateKey) -> CertPair:
    pair = CertPair(cert=directory / f"{name}.crt", key=directory / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(pair.key, key)
    return pair


def _write_private(path: Path, key: _PrivateKey) -> None:
    path.touch(mode=0o600)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
