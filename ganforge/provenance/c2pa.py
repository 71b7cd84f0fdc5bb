"""C2PA manifests: sign the PNGs ganforge hands out, and read and validate them in ``verify``.

Uses the Content Authenticity Initiative's own bindings (``c2pa-python``, the ``c2pa`` extra),
imported only when an image is signed or a manifest is read, so that nothing else needs them.
A manifest says: made by ``ganforge/VERSION``, one ``c2pa.created`` action whose
digitalSourceType is IPTC's ``trainedAlgorithmicMedia``, the model's name and 16-bit id (never
a local path), and for a translated or upscaled image its input as the parent ingredient.
Reading never touches the network (no remote manifests, no OCSP); ``trust_anchors`` adds the
user's own root certificates to the library's trust list (``--c2pa-trust``).
"""

from __future__ import annotations

import datetime
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import ganforge
from ganforge.core.files import atomic_write
from ganforge.errors import ConfigError, MissingDependency

TRAINED_ALGORITHMIC_MEDIA = ("http://cv.iptc.org/newscodes/digitalsourcetype/"
                             "trainedAlgorithmicMedia")
INSTALL_HINT = "pip install 'ganforge[c2pa]'"
KEY_ENV, CERT_ENV = "GANFORGE_C2PA_KEY", "GANFORGE_C2PA_CERT"
TRUST_ENV = "GANFORGE_C2PA_TRUST"
#: how manifests are read: offline (run-time downloads are not allowed)
READ_SETTINGS = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
#: the validation failure that only says the signer is on no trust list
UNTRUSTED = "signingCredential.untrusted"
#: ganforge metadata fields a manifest repeats (names and ids, never paths)
MANIFEST_FIELDS = ("model", "model_id", "prompt", "direction", "seed", "steps")
MIME_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
              ".webp": "image/webp", ".gif": "image/gif", ".tif": "image/tiff",
              ".tiff": "image/tiff", ".bmp": "image/bmp"}


def _library() -> ModuleType:
    try:
        import c2pa
    except ImportError as exc:
        raise MissingDependency(f"C2PA manifests need the c2pa-python package ({exc}); install "
                                f"it with: {INSTALL_HINT}") from None
    return c2pa


@dataclass(frozen=True)
class C2paSigner:
    """A signing key and its certificate chain (PEM files); the algorithm follows the key:
    PS256 (RSA), ES256/384/512 (EC P-256/384/521) or Ed25519. An ingredient (the input of a
    translation or upscale) is titled by its base name only with ``name_inputs``
    (``--metadata-source``), else "input image"."""

    key: Path
    cert: Path
    name_inputs: bool = False

    @classmethod
    def from_options(cls, key: str | None, cert: str | None,
                     name_inputs: bool = False) -> C2paSigner | None:
        """The signer named by ``--c2pa-key/--c2pa-cert`` or, where those are not given,
        ``GANFORGE_C2PA_KEY/GANFORGE_C2PA_CERT``; None when neither names a key."""
        key = key or os.environ.get(KEY_ENV) or None
        cert = cert or os.environ.get(CERT_ENV) or None
        if key is None and cert is None:
            return None
        if key is None or cert is None:
            raise ConfigError("C2PA signing needs both a key and a certificate (--c2pa-key and "
                              f"--c2pa-cert, or {KEY_ENV} and {CERT_ENV}); got only the "
                              + ("key" if key else "certificate"))
        for path in (key, cert):
            if not Path(path).is_file():
                raise ConfigError(f"C2PA key or certificate {path} does not exist")
        signer = cls(Path(key), Path(cert), name_inputs)
        signer._signer().close()  # a bad key or certificate fails before any image is made
        return signer

    def _signer(self) -> Any:
        c2pa = _library()
        from cryptography import x509
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            PublicFormat,
            load_pem_private_key,
        )

        public = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)

        key = self.key.read_bytes()
        try:
            private = load_pem_private_key(key, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"C2PA key {self.key} is not an unencrypted PEM private key "
                              f"({exc})") from None
        curves = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if isinstance(private, rsa.RSAPrivateKey):
            alg = "PS256"
        elif isinstance(private, ed25519.Ed25519PrivateKey):
            alg = "ED25519"
        elif isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name in curves:
            alg = curves[private.curve.name]
        else:
            raise ConfigError(f"C2PA key {self.key} is a {type(private).__name__}; expected an "
                              "RSA (PS256), EC P-256/384/521 (ES256/384/512) or Ed25519 key")
        chain = self.cert.read_bytes()
        try:
            certificate = x509.load_pem_x509_certificates(chain)[0]
        except ValueError as exc:
            raise ConfigError(f"C2PA certificate {self.cert} is not a PEM certificate chain "
                              f"({exc})") from None
        if certificate.public_key().public_bytes(*public) != private.public_key().public_bytes(
                *public):
            raise ConfigError(f"C2PA key {self.key} and certificate {self.cert} cannot sign: "
                              "the first certificate is not the key's")
        try:
            return c2pa.Signer.from_info(c2pa.C2paSignerInfo(
                getattr(c2pa.C2paSigningAlg, alg), chain, key, None))
        except c2pa.C2paError as exc:
            raise ConfigError(f"C2PA key {self.key} and certificate {self.cert} cannot sign: "
                              f"{exc}") from None

    def sign_file(self, path: str | Path, fields: Mapping[str, Any],
                  ingredient: str | Path | None = None) -> Path:
        """Embed a signed manifest in the image at ``path`` (replaced atomically); ``fields`` are
        its ganforge metadata, ``ingredient`` the input it was made from, if any."""
        path = Path(path)
        # an output of translate/upscale is named after its input: its name only when asked
        title = path.name if self.name_inputs or ingredient is None else None
        parent = Path(ingredient) if ingredient is not None else None
        signed = self.sign_bytes(
            path.read_bytes(), fields, parent.read_bytes() if parent else None,
            ingredient_type=MIME_TYPES.get(parent.suffix.lower(), "image/png") if parent
            else "image/png",
            mime_type=MIME_TYPES.get(path.suffix.lower(), "image/png"), title=title,
            ingredient_title=parent.name if parent and self.name_inputs else "input image",
            what=str(path))
        atomic_write(path, lambda tmp: tmp.write_bytes(signed))
        return path

    def sign_bytes(self, data: bytes, fields: Mapping[str, Any], ingredient: bytes | None = None,
                   ingredient_type: str = "image/png", mime_type: str = "image/png",
                   title: str | None = None, ingredient_title: str = "input image",
                   what: str | None = None) -> bytes:
        """``data`` (an image file's bytes, of ``mime_type``) with a signed manifest embedded;
        ``ingredient``: the bytes of the input it was made from (of ``ingredient_type``), if
        any; ``what`` names the image in an error (default: its type)."""
        c2pa = _library()
        signed = io.BytesIO()
        try:
            with c2pa.Builder(manifest_definition(fields, title)) as builder:
                if ingredient is not None:
                    builder.add_ingredient({"title": ingredient_title, "relationship": "parentOf"},
                                           ingredient_type, io.BytesIO(ingredient))
                with self._signer() as signer:
                    builder.sign(signer, mime_type, io.BytesIO(data), signed)
        except c2pa.C2paError as exc:
            raise ConfigError(f"C2PA signing of {what or 'a ' + mime_type + ' image'} failed: "
                              f"{exc}") from None
        return signed.getvalue()


def manifest_definition(fields: Mapping[str, Any], title: str | None = None) -> dict[str, Any]:
    """The manifest of a generated image: claim generator, the created action, the model."""
    parameters = {f"ganforge.{k}": str(fields[k]) for k in MANIFEST_FIELDS
                  if fields.get(k) is not None}
    agent = {"name": "ganforge", "version": ganforge.__version__}
    return {"claim_generator_info": [agent], **({"title": title} if title else {}),
            "assertions": [{"label": "c2pa.actions", "data": {"actions": [
                {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                 "softwareAgent": agent, "parameters": parameters}]}}]}


def trust_anchors(path: str | Path | None = None) -> str | None:
    """The PEM root certificates at ``path`` (default: $GANFORGE_C2PA_TRUST; None when
    neither is set), checked to hold at least one certificate."""
    path = path or os.environ.get(TRUST_ENV) or None
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"C2PA trust anchors {file} do not exist (--c2pa-trust or "
                          f"{TRUST_ENV}: a PEM file of root certificates)")
    text = file.read_text(errors="replace")
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ConfigError(f"C2PA trust anchors {file} hold no PEM certificate "
                          "(expected -----BEGIN CERTIFICATE----- blocks)")
    return text


def read_manifest(data: bytes, mime_type: str | None = None,
                  trusted: str | None = None) -> dict[str, Any]:
    """The C2PA evidence in the bytes of an image file: ``state`` is "valid", "untrusted signer"
    (intact and correctly signed, but the certificate chains to no trusted root), "invalid"
    (the image or manifest changed after signing, or a bad signature) or "none"; with the claim
    generator, signer, digitalSourceType and the failures the library reported. ``trusted``:
    PEM root certificates trusted beside the library's own list (:func:`trust_anchors`)."""
    if b"c2pa" not in data:  # every manifest store is a JUMBF box labelled "c2pa"
        return {"state": "none"}
    c2pa = _library()
    settings: dict[str, Any] = dict(READ_SETTINGS)
    if trusted:
        settings["trust"] = {"user_anchors": trusted}
    try:
        reader = c2pa.Reader.try_create(mime_type, io.BytesIO(data),
                                        context=c2pa.Context.from_dict(settings))
    except c2pa.C2paError as exc:
        return {"state": "invalid", "failures": [str(exc)]}
    if reader is None:
        return {"state": "none"}
    with reader:
        manifest = reader.get_active_manifest() or {}
        results = (reader.get_validation_results() or {}).get("activeManifest") or {}
        failures = [f.get("code", "") for f in results.get("failure", [])]
        library_state = reader.get_validation_state()
    if library_state == "Invalid" or any(code != UNTRUSTED for code in failures):
        state = "invalid"
    elif UNTRUSTED in failures:
        state = "untrusted signer"
    else:
        state = "valid"
    generator = next(iter(manifest.get("claim_generator_info") or []), {})
    created = next((action for assertion in manifest.get("assertions", [])
                    if assertion.get("label", "").startswith("c2pa.actions")
                    for action in assertion.get("data", {}).get("actions", [])
                    if action.get("action") == "c2pa.created"), {})
    signature = manifest.get("signature_info") or {}
    return {"state": state, "validation_state": library_state, "failures": failures,
            "claim_generator": "/".join(str(generator[k]) for k in ("name", "version")
                                        if k in generator),
            "signer": signature.get("common_name") or signature.get("issuer"),
            "digital_source_type": created.get("digitalSourceType"),
            "parameters": created.get("parameters") or {},
            "ingredients": [i.get("title") for i in manifest.get("ingredients", [])]}


def make_test_cert(out: str | Path, name: str = "ganforge local test signer") -> tuple[Path, Path]:
    """A local test CA and an ES256 signing certificate it issues, for trying C2PA locally:
    writes ``key.pem`` (the signer's private key), ``cert.pem`` (signer certificate, then the
    CA's) and ``ca.pem`` (the CA's alone). No trust list holds this CA, so ``verify`` reports
    its manifests as "untrusted signer" unless told to trust it (``--c2pa-trust ca.pem``).
    (A bare self-signed certificate is refused by the C2PA library as a signer.)"""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:
        raise MissingDependency(f"make-test-cert needs the cryptography package ({exc}); "
                                f"install it with: {INSTALL_HINT}") from None

    def subject(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ganforge (untrusted)")])

    def usage(signing: bool) -> x509.KeyUsage:
        return x509.KeyUsage(digital_signature=signing, content_commitment=False,
                             key_encipherment=False, data_encipherment=False,
                             key_agreement=False, key_cert_sign=not signing,
                             crl_sign=not signing, encipher_only=False, decipher_only=False)

    now = datetime.datetime.now(datetime.UTC)
    ca_name = subject(f"{name} CA")
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def certificate(name: x509.Name, public: Any, ca: bool) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name)
                .public_key(public).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                               critical=True)
                .add_extension(usage(signing=not ca), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public),
                               critical=False))

    ca = certificate(ca_name, ca_key.public_key(), ca=True).sign(ca_key, hashes.SHA256())
    leaf = (certificate(subject(name), key.public_key(), ca=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = out / "key.pem", out / "cert.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                   for c in (leaf, ca)))
    (out / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path
