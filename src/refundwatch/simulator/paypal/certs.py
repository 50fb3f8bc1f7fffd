"""The test CA and the webhook signing certificate, and PayPal's webhook signature.

``--paypal-cert-dir DIR`` keeps them: ``ca.pem``, ``ca-key.pem``, ``signing.pem``, ``signing-key.pem``
are reused when present (a signing certificate past its validity is issued afresh by the same CA),
otherwise made: a self-signed CA (CN "refundwatch simulator test CA") and an RSA-2048 leaf it issues
for ``messageverificationcerts.paypal.com`` (O "PayPal, Inc.", SAN DNS of the same name, EKU
serverAuth), valid from a day ago for 365 days. The leaf is served, followed by the CA, as PayPal
serves its certificate and intermediate, at ``/paypal/v1/notifications/certs/CERT-360caa42-fca2a594-<8
hex of the leaf's SHA-256>``.

Signature (PayPal's scheme, GATEWAYS.md): base64 RSA PKCS#1 v1.5 SHA-256 over
``"{transmission_id}|{transmission_time}|{webhook_id}|{crc32(raw body) unsigned decimal}"``.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA_NAME", "CERT_PATH_PREFIX", "SIGNING_NAME", "Certificates", "load_or_create", "signed_message"]

CA_NAME = "refundwatch simulator test CA"
SIGNING_NAME = "messageverificationcerts.paypal.com"
CERT_PATH_PREFIX = "/v1/notifications/certs/CERT-360caa42-fca2a594-"
_DAY = datetime.timedelta(days=1)


def signed_message(transmission_id: str, transmission_time: str, webhook_id: str, body: bytes) -> bytes:
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}".encode()


@dataclass(frozen=True)
class Certificates:
    directory: Path
    ca: x509.Certificate
    leaf: x509.Certificate
    leaf_key: rsa.RSAPrivateKey

    @property
    def ca_pem(self) -> bytes:
        return self.ca.public_bytes(serialization.Encoding.PEM)

    @property
    def chain_pem(self) -> bytes:
        """The leaf, then the CA that issued it."""
        return self.leaf.public_bytes(serialization.Encoding.PEM) + self.ca_pem

    @property
    def cert_path(self) -> str:
        """The certificate's path under ``/paypal`` (it changes when the certificate does)."""
        digest = hashlib.sha256(self.leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
        return CERT_PATH_PREFIX + digest[:8]

    def sign(self, message: bytes) -> str:
        signature = self.leaf_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode("ascii")


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _make_ca(key: rsa.RSAPrivateKey) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 3650 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _make_leaf(ca: x509.Certificate, ca_key: rsa.RSAPrivateKey, key: rsa.RSAPrivateKey) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "California"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "San Jose"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PayPal, Inc."),
            x509.NameAttribute(NameOID.COMMON_NAME, SIGNING_NAME),
        ]
    )
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _DAY)
        .not_valid_after(now + 365 * _DAY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(SIGNING_NAME)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _read_key(path: Path) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError(f"{path} is not an RSA private key")
    return key


def _issued_by(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def load_or_create(directory: Path | None) -> Certificates:
    """The certificates in ``directory`` (made there when missing; a new temporary one when None)."""
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix="refundwatch-paypal-certs-"))
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, ca_key_path = directory / "ca.pem", directory / "ca-key.pem"
    leaf_path, leaf_key_path = directory / "signing.pem", directory / "signing-key.pem"
    if ca_path.exists() and ca_key_path.exists():
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
        ca_key = _read_key(ca_key_path)
    else:
        ca_key = _new_key()
        ca = _make_ca(ca_key)
        ca_key_path.write_bytes(_key_pem(ca_key))
        ca_key_path.chmod(0o600)
        ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    leaf: x509.Certificate | None = None
    if leaf_path.exists() and leaf_key_path.exists():
        leaf = x509.load_pem_x509_certificate(leaf_path.read_bytes())
        leaf_key = _read_key(leaf_key_path)
        now = datetime.datetime.now(datetime.UTC)
        if not leaf.not_valid_before_utc <= now < leaf.not_valid_after_utc or not _issued_by(leaf, ca):
            leaf = None
    if leaf is None:
        leaf_key = _new_key()
        leaf = _make_leaf(ca, ca_key, leaf_key)
        leaf_key_path.write_bytes(_key_pem(leaf_key))
        leaf_key_path.chmod(0o600)
        leaf_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return Certificates(directory, ca, leaf, leaf_key)
