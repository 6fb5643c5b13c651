"""The embedded cluster's certificates: what they are valid for and who signed them."""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from naaice_cluster import pki


def test_apiserver_certificate_names_loopback_and_the_in_cluster_service(tmp_path: Path) -> None:
    ca = pki.create_ca(tmp_path)
    cert = pki.issue_serving_cert(
        ca_cert=ca.cert,
        ca_key=ca.key,
        out_dir=tmp_path,
        name="apiserver",
        hosts=pki.APISERVER_HOSTS,
    )
    sans = pki.subject_alt_names(cert.cert)
    assert {"127.0.0.1", "localhost", "kubernetes.default.svc"} <= set(sans)


def test_webhook_certificate_is_signed_by_the_cluster_ca(tmp_path: Path) -> None:
    ca = pki.create_ca(tmp_path / "ca")
    leaf = pki.issue_serving_cert(ca_cert=ca.cert, ca_key=ca.key, out_dir=tmp_path / "hook")
    assert leaf.ca == ca.cert
    assert pki.subject_alt_names(leaf.cert) == ["127.0.0.1", "localhost"]
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    leaf_cert = x509.load_pem_x509_certificate(leaf.cert.read_bytes())
    leaf_cert.verify_directly_issued_by(ca_cert)
    # And a TLS stack accepts the pair as a server identity.
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(leaf.cert, leaf.key)


def test_keys_are_private_to_the_owner(tmp_path: Path) -> None:
    ca = pki.create_ca(tmp_path)
    sa = pki.create_service_account_key(tmp_path / "sa.key")
    assert ca.key.stat().st_mode & 0o077 == 0
    assert sa.stat().st_mode & 0o077 == 0
    assert isinstance(
        x509.load_pem_x509_certificate(ca.cert.read_bytes()).public_key(), ec.EllipticCurvePublicKey
    )


def test_front_proxy_client_certificate_is_for_client_auth_only(tmp_path: Path) -> None:
    ca = pki.create_ca(tmp_path)
    client = pki.issue_client_cert(
        ca_cert=ca.cert, ca_key=ca.key, out_dir=tmp_path, name="front-proxy-client"
    )
    cert = x509.load_pem_x509_certificate(client.cert.read_bytes())
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert cn == "front-proxy-client"
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
