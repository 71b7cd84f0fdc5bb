"""``ganforge serve``: the HTTP API as a client sees it — images, errors, batching, the queue."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
import struct
import threading
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the 'serve' extra is not installed")
pytest.importorskip("httpx", reason="the 'serve' extra is not installed")

import httpx
import torch
from conftest import stop_process
from fastapi.testclient import TestClient
from PIL import Image

from ganforge.cli import main
from ganforge.inference.cyclegan import CycleGANInferenceConfig, CycleGANModel
from ganforge.inference.dfgan import DFGANInferenceConfig, DFGANModel
from ganforge.pipelines import TextToImagePipeline
from ganforge.provenance.watermark import SCHEME
from ganforge.serve.app import ServeConfig, create_app

TINY_TEXT2IMAGE = {"size": 16, "generator_channels": 8, "text_encoder": "tiny", "text_dim": 32,
                   "text_layers": 1, "noise_dim": 16}
TINY_CYCLEGAN = {"size": 16, "generator_blocks": 1, "generator_channels": 8}


def save_tiny_models(folder: Path) -> tuple[Path, Path]:
    """A randomly initialised 16 px text-to-image model and CycleGAN translator (seeded)."""
    torch.manual_seed(0)
    text2image = DFGANModel.create(DFGANInferenceConfig(**TINY_TEXT2IMAGE)).save_pretrained(
        folder / "tiny-t2i")
    translator = CycleGANModel.create(CycleGANInferenceConfig(**TINY_CYCLEGAN)).save_pretrained(
        folder / "tiny-cyc")
    return text2image, translator


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return save_tiny_models(tmp_path_factory.mktemp("serve-models"))


def make_config(tiny_models: tuple[Path, Path], **limits: object) -> ServeConfig:
    t2i, cyc = tiny_models
    return ServeConfig(models=[("tiny", str(t2i))], translators=[("cyc", str(cyc))],
                       **limits)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client(tiny_models: tuple[Path, Path]) -> TestClient:
    with TestClient(create_app(make_config(tiny_models))) as c:
        yield c


def png_upload(size: tuple[int, int] = (24, 20), mode: str = "RGBA") -> bytes:
    image = Image.new(mode, size, (200, 30, 30, 255) if mode == "RGBA" else (200, 30, 30))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def png_claiming_size(width: int, height: int) -> bytes:
    """A valid PNG header (correct CRC) that claims width x height, with one tiny IDAT:
    decoding it would allocate the claimed size; only the header is honest."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


# ------------------------------------------------------------------------- generate
def test_generate_json_images_are_reproducible_pngs_with_metadata(client: TestClient) -> None:
    body = {"prompt": "a red circle", "n": 3, "seed": 7}
    first = client.post("/api/generate", json=body)
    assert first.status_code == 200, first.text
    result = first.json()
    assert result["seed"] == 7 and result["model"] == "tiny" and len(result["images"]) == 3
    image = decode(result["images"][2]["png_base64"])
    assert image.format == "PNG" and image.size == (16, 16)
    assert image.text["ganforge:prompt"] == "a red circle"
    assert image.text["ganforge:seed"] == "7" and image.text["ganforge:index"] == "2"
    assert image.text["ganforge:watermark"].startswith(SCHEME)  # marked by the pipeline
    again = client.post("/api/generate", json=body).json()
    assert [i["png_base64"] for i in again["images"]] == [i["png_base64"]
                                                          for i in result["images"]]
    other = client.post("/api/generate", json={**body, "seed": 8}).json()
    assert other["images"][0]["png_base64"] != result["images"][0]["png_base64"]
    chosen = client.post("/api/generate", json={"prompt": "x", "n": 1}).json()
    assert 0 <= chosen["seed"] < 2**31  # no seed given: the server picks one and says which


def test_generate_zip_holds_the_same_pngs(client: TestClient) -> None:
    body = {"prompt": "blue square", "n": 2, "seed": 3}
    response = client.post("/api/generate", json={**body, "format": "zip"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert "attachment" in response.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        names = archive.namelist()
        assert names == ["blue-square_s3_000.png", "blue-square_s3_001.png"]
        zipped = [archive.read(name) for name in names]
    as_json = client.post("/api/generate", json=body).json()
    assert zipped == [base64.b64decode(i["png_base64"]) for i in as_json["images"]]


def test_concurrent_requests_share_batches_and_keep_their_images(
        tiny_models: tuple[Path, Path]) -> None:
    """Eight clients at once: fewer model calls than requests, and each client gets exactly
    the images the pipeline gives for its own prompt and seed alone."""
    app = create_app(make_config(tiny_models, batch_window_ms=150.0))
    prompts = [f"a {c} {s}" for c in ("red", "green", "blue", "yellow")
               for s in ("circle", "square")]

    async def fire() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*[
                c.post("/api/generate", json={"prompt": p, "n": 2, "seed": i})
                for i, p in enumerate(prompts)])

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [200] * len(prompts)
    stats = app.state.server.batchers["tiny"].stats
    assert stats.items == len(prompts) and stats.batches < len(prompts)
    assert max(stats.batch_sizes) >= 4
    pipe = TextToImagePipeline.from_pretrained(tiny_models[0])
    for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        alone = pipe(prompt, num_images=2, seed=i)
        for image, expected in zip(response.json()["images"], alone, strict=True):
            served = np.asarray(decode(image["png_base64"]).convert("RGB"), dtype=int)
            assert np.abs(served - np.asarray(expected, dtype=int)).max() <= 1


def test_full_queue_answers_503_with_retry_after(tiny_models: tuple[Path, Path]) -> None:
    """With the model thread busy and two requests waiting, more get 503 at once; the
    waiting ones are served when the thread frees up."""
    app = create_app(make_config(tiny_models, queue_size=2, batch_window_ms=0.0))
    worker = app.state.server.worker
    release = threading.Event()
    worker.executor.submit(release.wait, 30)  # the model thread is busy elsewhere

    async def fire() -> tuple[list[httpx.Response], list[httpx.Response], int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            body = {"prompt": "red heart", "n": 1, "seed": 0}
            waiting = [asyncio.create_task(c.post("/api/generate", json=body))
                       for _ in range(2)]
            while worker.pending < 2:
                await asyncio.sleep(0.01)
            refused = await asyncio.gather(*[c.post("/api/generate", json=body)
                                             for _ in range(3)])
            health = (await c.get("/api/health")).json()
            release.set()
            return list(await asyncio.gather(*waiting)), list(refused), health["queue"]

    served, refused, queue_seen = asyncio.run(fire())
    assert queue_seen == 2
    assert [r.status_code for r in refused] == [503] * 3
    assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
    assert "busy" in refused[0].json()["error"]
    assert [r.status_code for r in served] == [200, 200]
    assert worker.pending == 0


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"prompt": "", "n": 1}, 422, "prompt"),
    ({"prompt": "   ", "n": 1}, 422, "prompt is empty"),
    ({"prompt": "x" * 301, "n": 1}, 422, "at most 300 characters"),
    ({"prompt": "red", "n": 0}, 422, "n:"),
    ({"prompt": "red", "n": 17}, 422, "less than or equal to 16"),
    ({"prompt": "red", "seed": -1}, 422, "seed"),
    ({"prompt": "red", "truncation": 0.0}, 422, "truncation"),
    ({"prompt": "red", "format": "gif"}, 422, "format"),
    ({"prompt": 5}, 422, "prompt"),
    ({"n": 2}, 422, "prompt: Field required"),
    ({"prompt": "red", "model": "../../etc/passwd"}, 404, "no text-to-image model named"),
    ({"prompt": "red", "model": "cyc"}, 404, "this server has: tiny"),
    ({"prompt": "red", "skin_tones": "varied"}, 422, "takes no skin_tones setting"),
    ({"prompt": "red", "skin_tones": "rainbow"}, 422, "skin_tones"),
])
def test_bad_generate_requests_get_a_4xx_saying_what_is_wrong(
        client: TestClient, body: dict, status: int, says: str) -> None:
    response = client.post("/api/generate", json=body)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]


def test_malformed_json_is_a_422(client: TestClient) -> None:
    response = client.post("/api/generate", content=b"{not json",
                           headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]


# ---------------------------------------------------------------- translate & co
def test_translate_returns_png_or_json_at_model_size(client: TestClient) -> None:
    files = {"image": ("photo.png", png_upload((40, 24)), "image/png")}
    response = client.post("/api/translate", files=files, data={"direction": "b2a"})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (16, 16)
    assert image.text["ganforge:direction"] == "b2a" and image.text["ganforge:model"] == "cyc"
    as_json = client.post("/api/translate", files=files, data={"format": "json"}).json()
    assert as_json["direction"] == "a2b" and as_json["width"] == 16  # default direction
    assert decode(as_json["png_base64"]).size == (16, 16)
    jpeg = io.BytesIO()
    Image.new("RGB", (30, 30), (0, 90, 200)).save(jpeg, format="JPEG")
    response = client.post("/api/translate",
                           files={"image": ("p.jpg", jpeg.getvalue(), "image/jpeg")})
    assert response.status_code == 200


@pytest.mark.parametrize(("upload", "data", "status", "says"), [
    (("notes.txt", b"hello", "text/plain"), {}, 415, "content type 'text/plain'"),
    (("x.png", b"\x89PNG\r\n\x1a\nbroken", "image/png"), {}, 422, "corrupt"),
    (("x.png", b"plain text, not an image", None), {}, 415, "not an image"),
    (("README.md", b"# ganforge\n", "text/markdown"), {}, 415, "content type"),
    (("x.png", b"", "image/png"), {}, 422, "empty"),
    (("big.png", png_claiming_size(5000, 5000), "image/png"), {}, 413,  # our limit
     "5000x5000 = 25000000 pixels; at most 16777216"),
    (("bomb.png", png_claiming_size(20_000, 20_000), "image/png"), {}, 413,  # PIL's
     "decompression bomb"),
    (("x.png", png_upload(), "image/png"), {"direction": "sideways"}, 422,
     "direction 'sideways' is unknown"),
    (("x.png", png_upload(), "image/png"), {"style": "van-gogh"}, 422, "style"),
    (("x.png", png_upload(), "image/png"), {"model": "/etc/passwd"}, 404,
     "no image-to-image model named"),
    (("x.png", png_upload(), "image/png"), {"format": "tiff"}, 422, "format"),
])
def test_bad_uploads_get_a_4xx_saying_what_is_wrong(
        client: TestClient, upload: tuple, data: dict, status: int, says: str) -> None:
    name, content, kind = upload
    file = (name, content, kind) if kind else (name, content)
    response = client.post("/api/translate", files={"image": file}, data=data)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]


def test_oversized_request_bodies_are_refused_before_reading(
        tiny_models: tuple[Path, Path]) -> None:
    with TestClient(create_app(make_config(tiny_models, max_upload_bytes=4096))) as c:
        big = png_upload((300, 300), "RGB") + b"\x00" * 80_000
        response = c.post("/api/translate", files={"image": ("big.png", big, "image/png")})
        assert response.status_code == 413 and "limit" in response.json()["error"]
        response = c.post("/api/translate", files={"image": ("ok.png", png_upload(),
                                                             "image/png")})
        assert response.status_code == 200


def test_upscale_and_verify_answer_or_say_they_are_missing(client: TestClient) -> None:
    files = {"image": ("x.png", png_upload((16, 16)), "image/png")}
    health = client.get("/api/health").json()
    upscaled = client.post("/api/upscale", files=files, data={"format": "json"})
    if health["upscale"]:
        assert upscaled.status_code == 200, upscaled.text
        body = upscaled.json()
        assert body["width"] > 16 and decode(body["png_base64"]).size == (body["width"],
                                                                           body["height"])
    else:
        assert upscaled.status_code == 501 and "upscale" in upscaled.json()["error"]
    verified = client.post("/api/verify", files=files)
    if health["verify"]:  # a served image is recognised; a plain drawing is not
        assert verified.status_code == 200 and verified.json()["verdict"] != "generated"
        made = client.post("/api/generate", json={"prompt": "red", "n": 1, "seed": 0}).json()
        png = base64.b64decode(made["images"][0]["png_base64"])
        report = client.post("/api/verify", files={"image": ("g.png", png, "image/png")})
        assert report.status_code == 200 and report.json()["verdict"] == "generated"
        assert report.json()["metadata"]["prompt"] == "red"
    else:
        assert verified.status_code == 501 and "verify" in verified.json()["error"]
    wrong = client.post("/api/verify", files={"image": ("x.txt", b"hi", "text/plain")})
    assert wrong.status_code == 415


@pytest.mark.parametrize("kind", [None, "application/octet-stream", "text/markdown"])
def test_a_file_that_is_no_image_gets_415_from_every_upload(client: TestClient,
                                                            kind: str | None) -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"  # as `curl -F image=@README.md`
    upload = ("README.md", readme.read_bytes()[:4096]) + ((kind,) if kind else ())
    for path in ("/api/verify", "/api/translate", "/api/upscale"):
        response = client.post(path, files={"image": upload})
        assert response.status_code == 415, (path, response.text)
        assert "image" in response.json()["error"]


def test_upscale_carries_the_uploads_provenance_and_adds_its_step(client: TestClient) -> None:
    if not client.get("/api/health").json()["upscale"]:
        pytest.skip("this ganforge has no upscaler")
    made = client.post("/api/generate", json={"prompt": "red", "n": 1, "seed": 4}).json()
    png = base64.b64decode(made["images"][0]["png_base64"])
    response = client.post("/api/upscale", files={"image": ("g.png", png, "image/png")})
    assert response.status_code == 200, response.text
    text = Image.open(io.BytesIO(response.content)).text
    assert text["ganforge:prompt"] == "red" and text["ganforge:seed"] == "4"
    assert text["ganforge:model"] == "tiny"  # the chain still names the generator
    (step,) = json.loads(text["ganforge:steps"])
    assert step["step"] == "upscale" and step["from"] == "16x16" and step["scale"] == 4
    plain = client.post("/api/upscale", files={"image": ("p.png", png_upload((16, 16)),
                                                         "image/png")})
    text = Image.open(io.BytesIO(plain.content)).text
    assert text["ganforge:model"] == json.loads(text["ganforge:steps"])[0]["model"]
    assert "ganforge:prompt" not in text


def test_each_request_is_logged_with_method_path_status_and_ms(
        client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ganforge.serve.access")
    client.get("/api/health")
    client.post("/api/generate", json={"prompt": "red", "n": 1, "seed": 0})
    client.get("/api/no-such-thing?secret=1")
    lines = [r.getMessage() for r in caplog.records if r.name == "ganforge.serve.access"]
    assert len(lines) == 3, lines
    pattern = r"^(GET|POST) (/\S*) (\d{3}) \d+\.\d ms$"
    parsed = [re.match(pattern, line).groups() for line in lines]  # type: ignore[union-attr]
    assert parsed == [("GET", "/api/health", "200"), ("POST", "/api/generate", "200"),
                      ("GET", "/api/no-such-thing", "404")]  # no query string


def test_models_link_their_model_cards(client: TestClient) -> None:
    models = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    assert models["tiny"]["card"] is None  # saved without a README.md
    card = client.get("/api/models/tiny/card")
    assert card.status_code == 404 and "no model card" in card.json()["error"]
    if "upscaler" in models:  # the shipped one has its model card
        card = client.get(models["upscaler"]["card"])
        assert card.status_code == 200 and card.headers["content-type"].startswith(
            "text/markdown") and "#" in card.text


def test_a_server_without_a_translator_says_how_to_get_one(
        tiny_models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    import ganforge.pipelines

    monkeypatch.setattr(ganforge.pipelines, "DEFAULT_TRANSLATOR", tmp_path / "absent")
    config = ServeConfig(models=[("tiny", str(tiny_models[0]))])
    with TestClient(create_app(config)) as c:
        response = c.post("/api/translate", files={"image": ("x.png", png_upload(),
                                                             "image/png")})
    assert response.status_code == 404
    message = response.json()["error"]
    assert "restyle-3d-64" in message and "--translator RUN" in message


# ------------------------------------------------------------------ models, auth, page
def test_models_lists_names_tasks_and_directions(client: TestClient) -> None:
    models = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    assert models["tiny"]["task"] == "text-to-image" and models["tiny"]["default"]
    assert models["cyc"]["directions"] == ["a2b", "b2a"] and models["cyc"]["size"] == 16
    assert models["tiny"]["options"] == [] and models["cyc"]["options"] == []
    for model in models.values():  # no server paths handed out; cards by API URL
        card = model.pop("card")
        assert "/" not in str(model) and card in (None, f"/api/models/{model['name']}/card")


def test_api_key_guards_the_api_but_not_health(tiny_models: tuple[Path, Path]) -> None:
    with TestClient(create_app(make_config(tiny_models, api_key="s3cret"))) as c:
        assert c.get("/api/health").json()["auth_required"] is True
        assert c.get("/api/models").status_code == 401
        response = c.post("/api/generate", json={"prompt": "red"},
                          headers={"X-API-Key": "wrong"})
        assert response.status_code == 401 and "API key" in response.json()["error"]
        ok = c.post("/api/generate", json={"prompt": "red", "n": 1},
                    headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200


def test_page_and_assets_are_local_and_only_packaged_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/static/app.js" in assets and "/static/style.css" in assets
    assert all(a.startswith("/") for a in assets)  # nothing from another host
    for asset in ("/static/app.js", "/static/style.css"):
        text = client.get(asset).text
        assert "http://" not in text and "https://" not in text
    for path in ("/static/../app.py", "/static/%2e%2e%2fapp.py", "/static/__init__.py",
                 "/static/..%2F..%2Fpyproject.toml"):
        response = client.get(path)
        assert response.status_code == 404, path
    schema = client.get("/openapi.json").json()
    assert {"/api/generate", "/api/translate", "/api/upscale", "/api/verify", "/api/models",
            "/api/health"} <= set(schema["paths"])


def test_api_fuzzed_from_its_schema_gives_no_server_error(
        tiny_models: tuple[Path, Path]) -> None:
    """schemathesis draws requests from the OpenAPI schema (bounded, derandomised): no 500.
    501 (feature absent) and 503 (queue full) are deliberate, documented answers."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, Phase, given, settings

    app = create_app(make_config(tiny_models))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    statuses: dict[str, set[int]] = {}
    def fuzz(operation: object) -> None:
        label = operation.label  # type: ignore[attr-defined]

        @settings(max_examples=8, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())  # type: ignore[attr-defined]
        def check(case: object) -> None:
            response = case.call()  # type: ignore[attr-defined]
            statuses.setdefault(label, set()).add(response.status_code)
            assert response.status_code < 500 or response.status_code in (501, 503), (
                f"{label}: {response.status_code} {response.text[:200]}")

        check()

    for result in schema.get_all_operations():
        fuzz(result.ok())
    assert len(statuses) == 7 and 200 in statuses["POST /api/generate"]


# ----------------------------------------------------------------------------- CLI
def test_serve_refuses_a_non_loopback_bind_without_a_key(
        tiny_models: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0", "--model", str(tiny_models[0])]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ganforge: error: --host 0.0.0.0") and "--api-key" in err
    assert main(["serve", "--model", "/nonexistent/model", "--port", "0"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny_models[0]), "--queue-size", "0"]) == 1
    assert "queue size" in capsys.readouterr().err


def test_serve_command_logs_one_line_per_request_by_default(
        tiny_models: tuple[Path, Path]) -> None:
    import os
    import queue
    import subprocess
    import sys
    import time
    import urllib.request

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "ganforge.cli", "serve", "--model", f"tiny={tiny_models[0]}",
         "--translator", f"cyc={tiny_models[1]}", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout],  # type: ignore
                     daemon=True).start()

    def wait_for(pattern: str) -> re.Match[str]:
        deadline, seen = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            match = re.search(pattern, seen[-1])
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r} in: {''.join(seen)[-2000:]}")

    try:
        url = wait_for(r"(http://127\.0\.0\.1:\d+)/").group(1)
        with urllib.request.urlopen(url + "/api/health", timeout=30) as response:
            assert response.status == 200
        wait_for(r"^ganforge: GET /api/health 200 \d+\.\d ms$")
    finally:
        stop_process(process)


def test_varied_skin_tones_through_the_api_match_the_pipeline_and_batch_apart() -> None:
    """A ragan model offers skin_tones; a varied and a plain request batched together each get
    the pipeline's own images for their setting."""
    import importlib.util

    from ganforge.pipelines import DEFAULT_MODEL

    if importlib.util.find_spec("sentence_transformers") is None:
        pytest.skip("the shipped model's text encoder needs the minilm extra")
    app = create_app(ServeConfig(models=[("emoji", str(DEFAULT_MODEL))], translators=[],
                                 batch_window_ms=150.0))
    bodies = [{"prompt": "man running", "n": 6, "seed": 3, "skin_tones": "varied"},
              {"prompt": "man running", "n": 6, "seed": 3}]

    async def fire() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            listed = (await c.get("/api/models")).json()["models"]
            assert {m["name"]: m["options"] for m in listed}["emoji"] == ["skin_tones"]
            return await asyncio.gather(*[c.post("/api/generate", json=b) for b in bodies])

    varied, plain = (r.json()["images"] for r in asyncio.run(fire()))
    pipe = TextToImagePipeline.from_pretrained(DEFAULT_MODEL)
    for got, options in ((varied, {"skin_tones": "varied"}), (plain, {})):
        want = pipe("man running", num_images=6, seed=3, **options)
        for image, expected in zip(got, want, strict=True):
            served = np.asarray(decode(image["png_base64"]).convert("RGB"), dtype=int)
            assert np.abs(served - np.asarray(expected, dtype=int)).max() <= 1
    assert [i["png_base64"] for i in varied] != [i["png_base64"] for i in plain]
