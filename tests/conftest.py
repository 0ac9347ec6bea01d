"""Shared fixtures: a tiny tokenizer and tiny random models built on the spot (CPU, milliseconds)."""

from __future__ import annotations

from collections.abc import Callable

import shutil
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from dcode.model.config import ModelConfig
from dcode.model.loader import LoadedModel, build_model
from dcode.model.tokenizer import Tokenizer, train_tokenizer
from dcode.model.transformer import KVCache

TINY_CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "for i in range(10):\n\tprint(i)\n",
    "import os\nimport sys\n\nprint(os.getcwd(), sys.argv)\n",
    "function f(x) {\n  return x * 2;\n}\n",
] * 20


# Where test data lives: tests are grouped in folders that mirror dcode's packages.
TESTS = Path(__file__).resolve().parent
REPO_ROOT = TESTS.parent
DATA = TESTS / "data"
FIXTURES = TESTS / "fixtures"
REPOS = DATA / "repos"


@pytest.fixture(scope="session", autouse=True)
def empty_model_cache(tmp_path_factory):
    """An empty dcode cache for the whole run (tests that need one set their own), so the default
    model is dcode-mini here as on a fresh machine, whatever this machine has pulled."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DCODE_CACHE_DIR", str(tmp_path_factory.mktemp("dcode-cache")))
        mp.delenv("DCODE_MODEL", raising=False)
        yield


def compiles(text: str) -> bool:
    """Whether Python source compiles (the stricter check the hook and fill verify against)."""
    try:
        compile(text, "<test>", "exec")
        return True
    except SyntaxError:
        return False


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`$XDG_CACHE_HOME` inside tmp_path, so index caches never land in the real home."""
    home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


def copy_repo(tmp_path: Path, name: str) -> Path:
    """A fresh copy of one of the small multi-language repositories under tests/data/repos."""
    root = tmp_path / name
    shutil.copytree(REPOS / name, root)
    return root


@pytest.fixture(scope="session")
def shipped_model():
    """The model in weights/ that dcode ships and loads by default."""
    from dcode.model.paths import default_model_dir

    return default_model_dir()


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Tokenizer:
    return train_tokenizer(TINY_CORPUS, vocab_size=300)


def tiny_config(tok: Tokenizer, **overrides) -> ModelConfig:
    fields = dict(
        vocab_size=320, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, max_seq_len=512,
        mask_id=tok.mask_id, pad_id=tok.pad_id, eos_id=tok.eos_id,
    )
    fields.update(overrides)
    return ModelConfig(**fields)


@pytest.fixture
def tiny_model(tiny_tokenizer) -> LoadedModel:
    return build_model(tiny_config(tiny_tokenizer), tiny_tokenizer, device="cpu", seed=0)


class ScriptedNet(nn.Module):
    """A stand-in network whose prediction at each canvas position is a rule we choose.

    `rule(position, canvas_tokens) -> (token_id, confidence)`; it speaks the Transformer's
    forward interface (positions, cache, return_cache) so the real sampler drives it.
    """

    def __init__(self, vocab: int, rule: Callable[[int, Tensor], tuple[int, float]]) -> None:
        super().__init__()
        self.vocab = vocab
        self.rule = rule
        self.calls: list[int] = []  # number of positions computed per call
        self.full_tokens: Tensor | None = None

    def forward(self, tokens, positions=None, cache=None, key_mask=None, return_cache=False, causal_until=None):
        B, T = tokens.shape
        if positions is None:
            positions = torch.arange(T)
            self.full_tokens = tokens[0].clone()
        else:
            # With a cache, the active tokens are written back into the last full canvas.
            self.full_tokens[positions] = tokens[0]
        self.calls.append(T)
        logits = torch.zeros(B, T, self.vocab)
        for j, p in enumerate(positions.tolist()):
            tok, conf = self.rule(p, self.full_tokens)
            # Softmax gives the chosen token probability `conf`, the rest share what is left.
            rest = (1 - conf) / (self.vocab - 1)
            logits[:, j] = torch.log(torch.tensor(max(rest, 1e-12)))
            logits[:, j, tok] = torch.log(torch.tensor(conf))
        if return_cache:
            empty = torch.zeros(B, 1, T, 1)
            return logits, KVCache([empty], [empty], torch.arange(T)[None])
        return logits


@pytest.fixture
def scripted(tiny_tokenizer) -> Callable[..., LoadedModel]:
    def make(rule: Callable[[int, Tensor], tuple[int, float]]) -> LoadedModel:
        cfg = tiny_config(tiny_tokenizer)
        net = ScriptedNet(cfg.vocab_size, rule)
        return LoadedModel(net, tiny_tokenizer, cfg, torch.device("cpu"), torch.float32, None)

    return make


@pytest.fixture
def emitting(scripted) -> Callable[[str], LoadedModel]:
    """A model that writes `text` into whatever hole it is given, then pads: the hole starts at
    the first mask of the canvas (every slot is committed in the first pass)."""

    def make(text: str, canvases: list[Tensor] | None = None) -> LoadedModel:
        """`canvases`, when given, collects every canvas the model is asked about."""
        tok = None

        def rule(position, canvas):
            if canvases is not None:
                canvases.append(canvas.clone())
            masks = (canvas == tok.mask_id).nonzero()
            offset = position - int(masks[0]) if len(masks) else -1
            return (ids[offset], 0.99) if 0 <= offset < len(ids) else (tok.pad_id, 0.99)

        model = scripted(rule)
        tok = model.tokenizer
        ids = tok.encode(text)
        return model

    return make
