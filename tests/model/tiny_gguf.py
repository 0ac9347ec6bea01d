"""Tiny llama GGUF files written with gguf's own writer, laid out as llama.cpp's converter lays
out SmolLM2: token_embd Q8_0, block matrices Q4_1, norms F32, tied embeddings, Q/K rows permuted
(the converter's formula, spelled out below), a byte-level BPE trained on the spot. Shared by the
GGUF reader's tests and dcode-small's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter
from gguf.quants import quantize
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

DIM, LAYERS, HEADS, KV_HEADS, FFN, CTX, THETA, EPS = 64, 2, 4, 2, 128, 256, 50000.0, 1e-6
HEAD_DIM = DIM // HEADS
CONTROL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<file_sep>", "<empty_output>"]
EXTRA = ["<|mask|>", "<|pad|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"]
CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "for i in range(10):\n\tprint(i, 2024)\n",
    "import os\r\nprint(os.getcwd())\r\n\r\n",
    "sizes = [\n        1,\n        22,\n]\n",
] * 10
ROUND_TRIPS = [
    "", " ", "    ", "\t\t", "x  =  1   \n", "a\r\nb\r\n\r\nc", "if x:\n\treturn 1\n\n\n", "trailing   \t ",
    "café = 'é'  # 中文 🎉\n", "n = 1234567890\n", "\n        12345\n",
    "<|endoftext|>", "<|mask|>x<|im_end|>\n",
]
# Our names (without ".weight") -> GGUF names, and the ggml type SmolLM2's Q4_1 file uses.
GGUF_NAMES = {"embed": "token_embd", "norm": "output_norm", "head": "output"} | {
    f"blocks.{i}.{ours}": f"blk.{i}.{theirs}"
    for i in range(LAYERS)
    for ours, theirs in [
        ("attn_norm", "attn_norm"), ("attn.wq", "attn_q"), ("attn.wk", "attn_k"), ("attn.wv", "attn_v"),
        ("attn.wo", "attn_output"), ("mlp_norm", "ffn_norm"), ("mlp.w_gate", "ffn_gate"),
        ("mlp.w_up", "ffn_up"), ("mlp.w_down", "ffn_down"),
    ]
}


def llama_cpp_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute, verbatim in numpy."""
    rows, cols = w.shape
    return w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def train_bpe() -> HFTokenizer:
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=340, special_tokens=CONTROL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    hf.train_from_iterator(CORPUS, trainer=trainer)
    hf.encode_special_tokens = True
    return hf


def random_weights(vocab: int, tied: bool, seed: int = 0) -> dict[str, torch.Tensor]:
    """HF-layout llama weights; Q/K large enough for sharp attention, so row order matters."""
    gen = torch.Generator().manual_seed(seed)
    shapes = {"embed": (vocab, DIM), "norm": (DIM,)} | ({} if tied else {"head": (vocab, DIM)})
    for i in range(LAYERS):
        p = f"blocks.{i}."
        shapes |= {p + "attn_norm": (DIM,), p + "mlp_norm": (DIM,), p + "attn.wq": (DIM, DIM),
                   p + "attn.wk": (KV_HEADS * HEAD_DIM, DIM), p + "attn.wv": (KV_HEADS * HEAD_DIM, DIM),
                   p + "attn.wo": (DIM, DIM), p + "mlp.w_gate": (FFN, DIM), p + "mlp.w_up": (FFN, DIM),
                   p + "mlp.w_down": (DIM, FFN)}
    weights = {}
    for name, shape in shapes.items():
        if name.endswith("norm"):
            weights[name] = 1 + 0.1 * torch.randn(shape, generator=gen)
        else:
            scale = 0.5 if name.endswith(("wq", "wk")) else 1.0 if name in ("embed", "head") else 0.15
            weights[name] = scale * torch.randn(shape, generator=gen)
    return weights


def write_gguf(path: Path, weights: dict[str, torch.Tensor], vocab: dict, *, quantized: bool = True,
               arch: str = "llama", meta: dict | None = None, drop: tuple[str, ...] = (),
               extra_tensors: dict[str, np.ndarray] | None = None) -> Path:
    tokens = sorted(vocab["vocab"], key=vocab["vocab"].get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in vocab["merges"]]
    keys = {
        "llama.block_count": LAYERS, "llama.context_length": CTX, "llama.embedding_length": DIM,
        "llama.feed_forward_length": FFN, "llama.attention.head_count": HEADS,
        "llama.attention.head_count_kv": KV_HEADS, "llama.rope.freq_base": THETA,
        "llama.attention.layer_norm_rms_epsilon": EPS, "llama.rope.dimension_count": HEAD_DIM,
        "llama.vocab_size": len(tokens), "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "smollm",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": [3 if t in CONTROL else 1 for t in tokens],
        "tokenizer.ggml.merges": merges, "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.padding_token_id": 2,
    } | (meta or {})
    w = GGUFWriter(path, arch)
    for key, value in keys.items():
        if key in drop:
            continue
        adder = {str: w.add_string, float: w.add_float32, int: w.add_uint32, list: w.add_array}[type(value)]
        adder(key, value)
    for ours, t in weights.items():
        if GGUF_NAMES[ours] + ".weight" in drop:
            continue
        a = t.numpy()
        if ours.endswith(("wq", "wk")):
            a = llama_cpp_permute(a, HEADS if ours.endswith("wq") else KV_HEADS)
        qtype = Q.F32 if not quantized or a.ndim == 1 else Q.Q8_0 if ours == "embed" else Q.Q4_1
        if qtype == Q.F32:
            w.add_tensor(GGUF_NAMES[ours] + ".weight", a.astype(np.float32))
        else:
            w.add_tensor(GGUF_NAMES[ours] + ".weight", quantize(a, qtype), raw_dtype=qtype)
    for name, a in (extra_tensors or {}).items():
        w.add_tensor(name, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
