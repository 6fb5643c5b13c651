"""Certificates and keys of the embedded cluster, made with `cryptography`: the cluster CA, the
apiserver's serving certificate, the service-account signing key, and serving certificates for
webhooks (the operator's admission server uses `issue_serving_cert`). Called by `controlplane`
when a cluster starts and by tests that run webhook servers."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The names the apiserver's certificate is valid for: loopback, and the in-cluster service name
#: so that clients using in-cluster config (KUBERNETES_SERVICE_HOST) verify it too.
APISERVER_HOSTS = (
    "127.0.0.1",
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.0.0.1",
)
_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class CertPaths:
    """PEM files of one issued certificate: the leaf, its key and the CA that signed it."""

    cert: Path
    key: Path
    ca: Path


def _write_key(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _san(hosts: tuple[str, ...] | list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def create_ca(directory: Path, *, common_name: str = "naaice-embedded-ca") -> CertPaths:
    """Write `ca.crt`/`ca.key` (a self-signed CA, EC P-256) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    crt_path, key_path = directory / "ca.crt", directory / "ca.key"
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return CertPaths(cert=crt_path, key=key_path, ca=crt_path)


def issue_serving_cert(
    *,
    ca_cert: Path,
    ca_key: Path,
    out_dir: Path,
    name: str = "webhook",
    hosts: tuple[str, ...] | list[str] = ("127.0.0.1", "localhost"),
) -> CertPaths:
    """Issue a TLS server certificate for `hosts` (IPs and DNS names) signed by the cluster CA.

    Writes `<name>.crt` and `<name>.key` into `out_dir`; the returned `ca` is `ca_cert`, which
    is what a webhook configuration's caBundle must hold."""
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    ca_private = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    if not isinstance(ca_private, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TypeError(f"{ca_key} holds an unsupported key type")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(hosts), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_private.public_key()),
            critical=False,
        )
        .sign(ca_private, hashes.SHA256())
    )
    crt_path, key_path = out_dir / f"{name}.crt", out_dir / f"{name}.key"
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return CertPaths(cert=crt_path, key=key_path, ca=ca_cert)


def issue_client_cert(
    *, ca_cert: Path, ca_key: Path, out_dir: Path, name: str, groups: tuple[str, ...] = ()
) -> CertPaths:
    """Issue a TLS client certificate (CN=`name`, O=`groups`) signed by the cluster CA."""
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    ca_private = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    if not isinstance(ca_private, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise TypeError(f"{ca_key} holds an unsupported key type")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, name)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_private, hashes.SHA256())
    )
    crt_path, key_path = out_dir / f"{name}.crt", out_dir / f"{name}.key"
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return CertPaths(cert=crt_path, key=key_path, ca=ca_cert)


def create_service_account_key(path: Path) -> Path:
    """An RSA key the apiserver uses both to sign and to verify service-account tokens."""
    _write_key(path, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return path


def subject_alt_names(cert: Path) -> list[str]:
    """The SANs of a PEM certificate as strings (IPs and DNS names), for checks and tests."""
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    ext = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    return ips + list(ext.get_values_for_type(x509.DNSName))
