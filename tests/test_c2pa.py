"""C2PA manifests: signing generated PNGs, and what ``verify`` reads back from them."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import ganforge
from ganforge.cli import main
from ganforge.errors import ConfigError, MissingDependency
from ganforge.provenance.c2pa import (
    TRAINED_ALGORITHMIC_MEDIA,
    C2paSigner,
    make_test_cert,
    read_manifest,
    trust_anchors,
)
from ganforge.provenance.metadata import read_png_metadata, save_png
from ganforge.provenance.verify import verify_image

pytest.importorskip("c2pa", reason="C2PA tests need the c2pa extra: pip install "
                    "'ganforge[c2pa]' (c2pa-python==0.38.1)")

FIELDS = {"model": "ganforge default (text2image-emoji-64)", "model_id": "beef",
          "prompt": "red heart", "seed": 0}


@pytest.fixture(scope="module")
def test_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_test_cert(tmp_path_factory.mktemp("c2pa-cert"))


@pytest.fixture
def signed_png(tmp_path: Path, test_cert: tuple[Path, Path]) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    signer = C2paSigner.from_options(str(test_cert[0]), str(test_cert[1]))
    return save_png(Image.fromarray(pixels), tmp_path / "signed.png", FIELDS, c2pa=signer)


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at < len(data):
        (length,), kind = struct.unpack(">I", data[at:at + 4]), data[at + 4:at + 8]
        chunks.append((kind, data[at + 8:at + 8 + length]))
        at += 12 + length
    return chunks


def _png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        for kind, body in chunks)


def _flip_pixel_byte(data: bytes) -> bytes:
    """The PNG with one byte of its decoded image data flipped, re-encoded so that it stays a
    readable PNG (the signed manifest is untouched)."""
    chunks = _chunks(data)
    raw = bytearray(zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT")))
    raw[1] ^= 0xFF  # the first sample of the first row (raw[0] is its filter type)
    first = next(i for i, (kind, _) in enumerate(chunks) if kind == b"IDAT")
    rest = [c for c in chunks[first:] if c[0] != b"IDAT"]
    return _png([*chunks[:first], (b"IDAT", zlib.compress(bytes(raw))), *rest])


def test_signed_png_verifies_as_untrusted_signer(signed_png: Path) -> None:
    result = verify_image(signed_png, use_detector=False)
    manifest = result.c2pa
    # the local test CA is on no trust list: the library calls the manifest "Valid" (hashes
    # and signature check out) with the one failure signingCredential.untrusted
    assert manifest["state"] == "untrusted signer"
    assert manifest["validation_state"] == "Valid"
    assert manifest["failures"] == ["signingCredential.untrusted"]
    assert manifest["claim_generator"] == f"ganforge/{ganforge.__version__}"
    assert manifest["digital_source_type"] == TRAINED_ALGORITHMIC_MEDIA
    assert manifest["signer"] == "ganforge local test signer"
    assert manifest["parameters"]["ganforge.model_id"] == "beef"
    assert not any("/" in v or "\\" in v for v in manifest["parameters"].values()
                   if v != FIELDS["model"])
    assert read_png_metadata(signed_png)["model_id"] == "beef"  # text chunks kept
    assert "c2pa: untrusted signer manifest by ganforge/" in result.summary()
    assert result.as_dict()["c2pa"]["state"] == "untrusted signer"


def test_flipped_image_byte_makes_the_manifest_invalid(signed_png: Path, tmp_path: Path) -> None:
    edited = tmp_path / "edited.png"
    edited.write_bytes(_flip_pixel_byte(signed_png.read_bytes()))
    manifest = verify_image(edited, use_detector=False).c2pa
    assert manifest["state"] == "invalid"
    assert "assertion.dataHash.mismatch" in manifest["failures"]
    assert "c2pa: invalid manifest (" in verify_image(edited, use_detector=False).summary()
    raw = bytearray(signed_png.read_bytes())  # a raw flip (no longer a readable PNG)
    raw[raw.find(b"IDAT") + 20] ^= 0x01
    assert read_manifest(bytes(raw), "image/png")["state"] == "invalid"


def test_trusting_the_signers_root_makes_it_valid_and_only_that_root(
        signed_png: Path, test_cert: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    ca = test_cert[0].parent / "ca.pem"
    assert ca.read_text().count("BEGIN CERTIFICATE") == 1
    manifest = verify_image(signed_png, use_detector=False, c2pa_trust=trust_anchors(ca)).c2pa
    assert manifest["state"] == "valid" and manifest["failures"] == []
    make_test_cert(tmp_path / "other")  # another local CA: its trust says nothing of ours
    other = trust_anchors(tmp_path / "other" / "ca.pem")
    assert verify_image(signed_png, use_detector=False, c2pa_trust=other).c2pa["state"] \
        == "untrusted signer"
    edited = tmp_path / "edited.png"  # trust never excuses a changed image
    edited.write_bytes(_flip_pixel_byte(signed_png.read_bytes()))
    assert verify_image(edited, use_detector=False, c2pa_trust=trust_anchors(ca)).c2pa[
        "state"] == "invalid"
    monkeypatch.setenv("GANFORGE_C2PA_TRUST", str(ca))  # the CLI reads the environment too
    assert main(["verify", "--no-detector", "--json", str(signed_png)]) == 0
    assert json.loads(capsys.readouterr().out)[0]["c2pa"]["state"] == "valid"
    with pytest.raises(ConfigError, match="hold no PEM certificate"):
        trust_anchors(test_cert[0])  # a private key, not certificates
    with pytest.raises(ConfigError, match="do not exist"):
        trust_anchors(tmp_path / "missing.pem")


def test_unsigned_image_has_no_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GANFORGE_C2PA_KEY", raising=False)
    monkeypatch.delenv("GANFORGE_C2PA_CERT", raising=False)
    assert C2paSigner.from_options(None, None) is None  # no key: no manifest, no error
    path = save_png(Image.new("RGB", (16, 16), "red"), tmp_path / "plain.png", FIELDS)
    result = verify_image(path, use_detector=False)
    assert result.c2pa == {"state": "none"}
    assert "  c2pa: none" in result.summary()
    assert verify_image(Image.open(path), use_detector=False).c2pa["state"] == "not checked"


def test_signer_options_are_checked(tmp_path: Path, test_cert: tuple[Path, Path],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GANFORGE_C2PA_CERT", raising=False)
    monkeypatch.setenv("GANFORGE_C2PA_KEY", str(test_cert[0]))
    with pytest.raises(ConfigError, match="both a key and a certificate"):
        C2paSigner.from_options(None, None)
    with pytest.raises(ConfigError, match="does not exist"):
        C2paSigner.from_options(None, str(tmp_path / "missing.pem"))
    monkeypatch.setenv("GANFORGE_C2PA_CERT", str(test_cert[1]))
    assert C2paSigner.from_options(None, None) == C2paSigner(*test_cert)
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        C2paSigner.from_options(str(test_cert[1]), str(test_cert[1]))
    other_key, _ = make_test_cert(tmp_path / "other")
    with pytest.raises(ConfigError, match="cannot sign"):
        C2paSigner.from_options(str(other_key), str(test_cert[1]))


def test_without_the_package(signed_png: Path, test_cert: tuple[Path, Path],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "c2pa", None)
    with pytest.raises(MissingDependency, match=r"pip install 'ganforge\[c2pa\]'"):
        C2paSigner.from_options(str(test_cert[0]), str(test_cert[1]))
    manifest = verify_image(signed_png, use_detector=False).c2pa
    assert manifest["state"] == "not checked" and "ganforge[c2pa]" in manifest["reason"]


def test_make_test_cert_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["c2pa", "make-test-cert", "--out", str(tmp_path)]) == 0
    assert "untrusted signer" in capsys.readouterr().out
    assert (tmp_path / "cert.pem").read_text().count("BEGIN CERTIFICATE") == 2
    assert (tmp_path / "key.pem").stat().st_mode & 0o077 == 0


def test_generate_cli_signs_watermarked_pngs(tmp_path: Path,
                                             test_cert: tuple[Path, Path]) -> None:
    out = tmp_path / "gen"
    assert main(["generate", "red heart", "-n", "1", "--out", str(out),
                 "--c2pa-key", str(test_cert[0]), "--c2pa-cert", str(test_cert[1])]) == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2  # one image and grid.png
    for path in pngs:
        result = verify_image(path, use_detector=False)
        assert result.c2pa["state"] == "untrusted signer", path
        assert result.watermark["found"], path  # the mark survives signing
        assert result.metadata["model_id"] == result.watermark["model_id"]
        assert result.c2pa["parameters"]["ganforge.model_id"] == result.metadata["model_id"]
        assert result.c2pa["parameters"]["ganforge.model"] == result.metadata["model"]
        assert result.verdict == "generated"


@pytest.mark.parametrize("command", ["upscale", "translate"])
def test_cli_records_its_input_as_ingredient(command: str, tmp_path: Path,
                                             test_cert: tuple[Path, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANFORGE_C2PA_KEY", str(test_cert[0]))
    monkeypatch.setenv("GANFORGE_C2PA_CERT", str(test_cert[1]))
    pixels = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "input.png")
    for flags, title in (([], "input image"), (["--metadata-source"], "input.png")):
        out = tmp_path / f"out{len(flags)}"
        assert main([command, str(tmp_path / "input.png"), "--out", str(out), *flags]) == 0
        result = verify_image(out / "input.png", use_detector=False)
        assert result.c2pa["state"] == "untrusted signer" and result.watermark["found"]
        assert result.c2pa["ingredients"] == [title]  # a file name only when asked
        assert (b"input.png" in (out / "input.png").read_bytes()) == bool(flags)


def test_help_and_verify_import_c2pa_only_to_read_and_never_torch(signed_png: Path) -> None:
    code = ("import sys\nfrom ganforge.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('c2pa' in sys.modules)\n"
            f"main(['verify', '--no-detector', {str(signed_png)!r}])\n"
            "print('c2pa' in sys.modules, 'torch' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    lines = run.stdout.strip().splitlines()
    assert lines[-1] == "True False" and "False" in lines
    assert "c2pa: untrusted signer manifest" in run.stdout


# ---------------------------------------------------------------------- ganforge serve
@pytest.fixture(scope="module")
def signing_client(tmp_path_factory: pytest.TempPathFactory, test_cert: tuple[Path, Path]):
    """A server (tiny models from test_serve) that signs what it hands out."""
    pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
    pytest.importorskip("httpx", reason="the 'serve' extra is not installed")
    from fastapi.testclient import TestClient

    from ganforge.serve.app import create_app
    from tests.test_serve import make_config, save_tiny_models

    models = save_tiny_models(tmp_path_factory.mktemp("c2pa-serve-models"))
    signer = C2paSigner.from_options(str(test_cert[0]), str(test_cert[1]))
    with TestClient(create_app(make_config(models, c2pa=signer))) as client:
        yield client


def test_served_pngs_are_signed_and_verify_reports_it(signing_client: Any) -> None:
    import base64

    body = {"prompt": "red heart", "n": 2, "seed": 5}
    answer = signing_client.post("/api/generate", json=body)
    assert answer.status_code == 200, answer.text
    pngs = [base64.b64decode(i["png_base64"]) for i in answer.json()["images"]]
    for j, data in enumerate(pngs):
        manifest = read_manifest(data, "image/png")
        assert manifest["state"] == "untrusted signer"
        assert manifest["claim_generator"] == f"ganforge/{ganforge.__version__}"
        assert manifest["digital_source_type"] == TRAINED_ALGORITHMIC_MEDIA
        assert manifest["parameters"]["ganforge.prompt"] == "red heart"
        assert manifest["parameters"]["ganforge.seed"] == "5"
        image = Image.open(io.BytesIO(data))
        assert image.text["ganforge:index"] == str(j)  # the text chunks are kept
    again = signing_client.post("/api/generate", json={**body, "format": "zip"})
    with zipfile.ZipFile(io.BytesIO(again.content)) as archive:
        first = archive.read(archive.namelist()[0])
    assert read_manifest(first, "image/png")["state"] == "untrusted signer"

    verified = signing_client.post("/api/verify",
                                   files={"image": ("generated.png", pngs[0], "image/png")})
    assert verified.status_code == 200, verified.text
    c2pa = verified.json()["c2pa"]
    assert c2pa["state"] == "untrusted signer"
    assert c2pa["signer"] == "ganforge local test signer"
    assert c2pa["parameters"]["ganforge.prompt"] == "red heart"
    # the manifest names the model by the id its invisible watermark carries
    assert c2pa["parameters"]["ganforge.model_id"] == verified.json()["watermark"]["model_id"]
    edited = signing_client.post("/api/verify", files={
        "image": ("edited.png", _flip_pixel_byte(pngs[0]), "image/png")})
    assert edited.json()["c2pa"]["state"] == "invalid"


def test_served_verify_trusts_the_roots_the_server_was_given(
        tmp_path: Path, test_cert: tuple[Path, Path], signed_png: Path) -> None:
    pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
    from fastapi.testclient import TestClient

    from ganforge.serve.app import create_app
    from tests.test_serve import make_config, save_tiny_models

    trusted = trust_anchors(test_cert[0].parent / "ca.pem")
    config = make_config(save_tiny_models(tmp_path), c2pa_trust=trusted)
    with TestClient(create_app(config)) as client:
        verified = client.post("/api/verify", files={
            "image": ("signed.png", signed_png.read_bytes(), "image/png")})
    assert verified.status_code == 200, verified.text
    assert verified.json()["c2pa"]["state"] == "valid"


def test_served_translations_and_upscales_name_no_upload(signing_client: Any) -> None:
    upload = io.BytesIO()
    Image.new("RGB", (24, 20), (200, 30, 30)).save(upload, format="JPEG")
    files = {"image": ("/home/someone/private-name.jpg", upload.getvalue(), "image/jpeg")}
    translated = signing_client.post("/api/translate", files=files)
    assert translated.status_code == 200, translated.text
    manifest = read_manifest(translated.content, "image/png")
    assert manifest["state"] == "untrusted signer"
    assert manifest["ingredients"] == ["input image"]  # the upload, never its file name
    assert b"private-name" not in translated.content
    assert len(manifest["parameters"]["ganforge.model_id"]) == 4
    if not signing_client.get("/api/health").json()["upscale"]:
        return
    upscaled = signing_client.post("/api/upscale", files={
        "image": ("t.png", translated.content, "image/png")})
    assert upscaled.status_code == 200, upscaled.text
    manifest = read_manifest(upscaled.content, "image/png")
    assert manifest["state"] == "untrusted signer"
    assert manifest["ingredients"] == ["input image"]
    assert "upscale" in manifest["parameters"]["ganforge.steps"]


def test_serve_takes_the_signer_from_options_or_environment(
        tmp_path: Path, test_cert: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
    import ganforge.serve.app as serve_app

    configs = []
    monkeypatch.setattr(serve_app, "serve", lambda config, **_: configs.append(config))
    monkeypatch.delenv("GANFORGE_C2PA_KEY", raising=False)
    monkeypatch.delenv("GANFORGE_C2PA_CERT", raising=False)
    assert main(["serve"]) == 0
    assert main(["serve", "--c2pa-key", str(test_cert[0]), "--c2pa-cert", str(test_cert[1])]) == 0
    monkeypatch.setenv("GANFORGE_C2PA_KEY", str(test_cert[0]))
    monkeypatch.setenv("GANFORGE_C2PA_CERT", str(test_cert[1]))
    assert main(["serve"]) == 0
    assert [c.c2pa for c in configs] == [None, C2paSigner(*test_cert), C2paSigner(*test_cert)]
    other_key, _ = make_test_cert(tmp_path / "other")
    monkeypatch.setenv("GANFORGE_C2PA_KEY", str(other_key))
    assert main(["serve"]) == 1  # refused at start-up, as generate refuses it
    with pytest.raises(ConfigError, match="cannot sign"):  # and by the config itself
        serve_app.ServeConfig(c2pa=C2paSigner(other_key, test_cert[1])).validate()
