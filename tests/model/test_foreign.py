"""Dream / LLaDA Hugging Face directories loaded natively (dcode.model.foreign, hf_tokenizers).

The fixtures are the tiny reference checkpoints of /work/shared/fixtures (logits computed by the
upstream modeling code); see tests/fixtures/README.md.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import regex
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

import dcode
from dcode.diffusion.engine import build_prompt, infill
from dcode.diffusion.sampler import DecodeOptions
from dcode.errors import InputError, ModelError
from dcode.model.checkpoint import quantize_rowwise
from dcode.model.foreign import Int8Embedding, Int8Linear, check_memory, describe_model, foreign_config, load_foreign
from dcode.model.hf_tokenizers import QWEN2_PATTERN, ForeignTokenizer, MissingTokenizer, chat_prompt_ids, special_ids
from dcode.model.loader import load_model
from tests.conftest import FIXTURES

DREAM, LLADA = FIXTURES / "dream-tiny", FIXTURES / "llada-tiny"


def expected(d: Path) -> dict:
    return json.loads((d / "expected.json").read_text())


def raw_config(d: Path) -> dict:
    return json.loads((d / "config.json").read_text())


def copy_fixture(src: Path, dst: Path, **config_changes) -> Path:
    shutil.copytree(src, dst)
    for p in dst.iterdir():
        p.chmod(0o644)
    raw = raw_config(dst)
    for key, value in config_changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    (dst / "config.json").write_text(json.dumps(raw))
    return dst


def tensors_of(d: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(d / "model.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


# --- logits parity -------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", [DREAM, LLADA], ids=["dream", "llada"])
def test_raw_logits_match_reference(fixture):
    exp = expected(fixture)
    model = load_model(fixture, device="cpu")  # through the loader's model_type dispatch
    raw = model.net(torch.tensor([exp["input_ids"]]))[0]
    ref = torch.tensor(exp["logits"])
    assert raw.dtype == torch.float32
    torch.testing.assert_close(raw, ref, atol=1e-4, rtol=0)
    assert raw.argmax(-1).tolist() == exp["argmax"]


def test_family_config_mapping():
    dream, llada = load_model(DREAM, device="cpu"), load_model(LLADA, device="cpu")
    assert (dream.family, dream.config.logit_shift, dream.config.qkv_bias) == ("dream", 1, True)
    assert (llada.family, llada.config.logit_shift, llada.config.qkv_bias) == ("llada", 0, False)
    assert (dream.config.rope_fp32, llada.config.rope_fp32) == (False, True)  # LLaDA's rope_full_precision
    assert (dream.config.rope_theta, dream.config.norm_eps) == (1e6, 1e-6)
    assert (llada.config.rope_theta, llada.config.norm_eps) == (5e5, 1e-5)
    for m in (dream, llada):
        c = m.config
        assert (c.vocab_size, c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.ffn_dim) == (512, 64, 2, 4, 2, 128)
        assert (c.mask_id, c.pad_id, c.eos_id, c.tie_embeddings, c.max_seq_len) == (511, 510, 510, False, 128)


def test_dream_logits_are_shifted_so_row_i_scores_token_i():
    exp = expected(DREAM)
    model = dcode.load_model(DREAM, device="cpu")
    aligned = model.logits(exp["input_ids"])[0]
    ref = torch.tensor(exp["logits"])
    torch.testing.assert_close(aligned[1:], ref[:-1], atol=1e-4, rtol=0)
    torch.testing.assert_close(aligned[0], ref[0], atol=1e-4, rtol=0)
    assert aligned.argmax(-1).tolist() == exp["argmax_shifted"]


def test_llada_logits_are_not_shifted():
    exp = expected(LLADA)
    aligned = load_model(LLADA, device="cpu").logits(exp["input_ids"])[0]
    assert aligned.argmax(-1).tolist() == exp["argmax"]


def test_llada_left_padding_with_key_mask_matches_recorded_check():
    exp = expected(LLADA)
    check = exp["left_padded_check"]
    model = load_model(LLADA, device="cpu")
    ids = torch.tensor([check["input_ids"]])
    key_mask = torch.tensor([check["attention_mask"]], dtype=torch.bool)
    padded = model.net(ids, key_mask=key_mask)[0]  # positions stay 0..T-1, as in LLaDA
    assert padded[2:].argmax(-1).tolist() == check["argmax_rows_2_to_17"]
    torch.testing.assert_close(padded[2:], torch.tensor(exp["logits"]), atol=1e-4, rtol=0)


def test_dream_left_padding_with_tok_idx_positions_matches_unpadded():
    from dcode.diffusion.compat import family_logits

    exp = expected(DREAM)
    model = load_model(DREAM, device="cpu")
    ids = torch.tensor([[510, 510] + exp["input_ids"]])
    mask = torch.tensor([[0, 0] + [1] * 16])
    padded = family_logits(model, ids, mask)[0]
    # Aligned row 2 reads a pad row (meaningless, like Dream's row 0); the rest match.
    torch.testing.assert_close(padded[3:], model.logits(exp["input_ids"])[0][1:], atol=1e-4, rtol=0)


# --- checkpoint layout and errors --------------------------------------------------------------------


def test_sharded_directory_with_index_loads_identically(tmp_path):
    d = copy_fixture(DREAM, tmp_path / "dream-sharded")
    tensors = tensors_of(d)
    (d / "model.safetensors").unlink()
    names = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((names[::2], names[1::2]), 1):
        file = f"model-0000{i}-of-00002.safetensors"
        save_file({n: tensors[n] for n in part}, str(d / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in part})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    exp = expected(DREAM)
    raw = load_model(d, device="cpu").net(torch.tensor([exp["input_ids"]]))[0]
    torch.testing.assert_close(raw, torch.tensor(exp["logits"]), atol=1e-4, rtol=0)
    assert describe_model(d)["checkpoint_bytes"] == total


@pytest.mark.parametrize(
    "fixture,key",
    [(DREAM, "num_key_value_heads"), (DREAM, "rope_theta"), (DREAM, "hidden_size"),
     (LLADA, "block_type"), (LLADA, "n_kv_heads"), (LLADA, "weight_tying"), (LLADA, "rms_norm_eps"),
     (LLADA, "include_bias")],
)
def test_missing_required_config_key_is_a_model_error_naming_it(tmp_path, fixture, key):
    d = copy_fixture(fixture, tmp_path / "m", **{key: None})
    with pytest.raises(ModelError, match=f"missing required key {key}") as info:
        load_model(d, device="cpu")
    assert info.value.exit_code == 3 and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "fixture,change,needle",
    [(DREAM, {"model_type": "mistral"}, "unsupported model_type"),
     (DREAM, {"rope_scaling": {"type": "yarn", "factor": 4.0}}, "rope_scaling"),
     (DREAM, {"num_key_value_heads": 3}, "n_heads 4 is not a multiple"),
     (LLADA, {"block_type": "sequential"}, "block_type='sequential' is not supported"),
     (LLADA, {"scale_logits": True}, "scale_logits"),
     (LLADA, {"mask_token_id": 600}, "mask_token_id 600 is outside the vocabulary")],
)
def test_unsupported_config_is_refused(tmp_path, fixture, change, needle):
    d = copy_fixture(fixture, tmp_path / "m", **change)
    with pytest.raises(ModelError, match=needle):
        load_model(d, device="cpu")


def test_missing_tensor_is_a_model_error_naming_it(tmp_path):
    d = copy_fixture(DREAM, tmp_path / "m")
    tensors = tensors_of(d)
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, str(d / "model.safetensors"))
    with pytest.raises(ModelError, match=r"missing tensor model\.layers\.1\.mlp\.up_proj\.weight"):
        load_model(d, device="cpu")


def test_wrong_shape_and_extra_tensor_are_model_errors(tmp_path):
    d = copy_fixture(LLADA, tmp_path / "m")
    tensors = tensors_of(d)
    tensors["model.transformer.blocks.0.k_proj.weight"] = torch.zeros(64, 64)
    save_file(tensors, str(d / "model.safetensors"))
    with pytest.raises(ModelError, match=r"blocks\.0\.k_proj\.weight has shape \(64, 64\)"):
        load_model(d, device="cpu")
    tensors = tensors_of(LLADA)
    tensors["model.transformer.wpe.weight"] = torch.zeros(4, 64)
    save_file(tensors, str(d / "model.safetensors"))
    with pytest.raises(ModelError, match=r"unexpected tensor model\.transformer\.wpe\.weight"):
        load_model(d, device="cpu")


# --- tokenizer-less fixtures ----------------------------------------------------------------------


def test_directory_without_tokenizer_files_loads_ids_only():
    model = load_model(DREAM, device="cpu")
    tok = model.tokenizer
    assert isinstance(tok, MissingTokenizer)
    assert (tok.mask_id, tok.pad_id, tok.eos_id, tok.bos_id, tok.expand_id) == (511, 510, 510, 510, None)
    with pytest.raises(ModelError, match="no tokenizer files"):
        tok.encode("def f(): pass")
    with pytest.raises(ModelError, match="no tokenizer files"):
        load_foreign(DREAM, raw_config(DREAM), device="cpu", require_tokenizer=True)


# --- Dream-style vocab.json + merges.txt ----------------------------------------------------------

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "for i in range(10):\n\tprint(i, 'it's', \"done\")\n",
    "import os\nimport sys\n\nprint(os.getcwd(), sys.argv)  # 2024 über naïve\n",
    "function f(x) {\n  return x * 2;\n}\n",
] * 30
DREAM_ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|dlm_pad|>", "<|beginoftext|>", "<|mask|>", "<|expand|>"]


def _train_bpe(vocab_size: int) -> HFTokenizer:
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    hf.train_from_iterator(CORPUS, trainer=trainer)
    return hf


@pytest.fixture(scope="module")
def dream_dir(tmp_path_factory) -> Path:
    """dream-tiny weights + a small Qwen2-style slow-tokenizer file set (no tokenizer.json)."""
    d = tmp_path_factory.mktemp("tok") / "dream-tok"
    copy_fixture(DREAM, d)
    hf = _train_bpe(400)
    hf.model.save(str(d))  # vocab.json + merges.txt
    n = hf.get_vocab_size()
    ids = {tok: n + i for i, tok in enumerate(DREAM_ADDED)}
    assert max(ids.values()) < 512
    (d / "added_tokens.json").write_text(json.dumps(ids))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "add_bos_token": False, "bos_token": "<|beginoftext|>", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "unk_token": None, "model_max_length": 131072}))
    (d / "special_tokens_map.json").write_text(json.dumps({"mask_token": {"content": "<|mask|>", "lstrip": False}}))
    eos = ids["<|endoftext|>"]
    raw = raw_config(d)  # like Dream's config.json: bos_token_id = eos, mask id from config
    raw.update(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, mask_token_id=ids["<|mask|>"])
    (d / "config.json").write_text(json.dumps(raw))
    gen = json.loads((d / "generation_config.json").read_text())
    gen.update(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos)
    (d / "generation_config.json").write_text(json.dumps(gen))
    return d


def test_dream_vocab_merges_tokenizer_round_trips_and_has_file_ids(dream_dir):
    added = json.loads((dream_dir / "added_tokens.json").read_text())
    model = load_model(dream_dir, device="cpu")
    tok = model.tokenizer
    assert isinstance(tok, ForeignTokenizer) and not isinstance(tok, MissingTokenizer)
    assert tok.vocab_size == max(added.values()) + 1
    for text in ["def f(x):\n    return x + 1  # héllo wörld ✓\n\n\tz = 12345\r\n", "", "  \n\n  x", "I'm 'S' ok"]:
        assert tok.decode(tok.encode(text), skip_special=False) == text
    assert tok.mask_id == model.config.mask_id == added["<|mask|>"]
    assert tok.eos_id == tok.pad_id == added["<|endoftext|>"]
    assert tok.bos_id == added["<|beginoftext|>"]  # the tokenizer's bos, not config.json's
    assert tok.expand_id == added["<|expand|>"]
    assert {added["<|im_end|>"], added["<|dlm_pad|>"], added["<|endoftext|>"]} <= tok.stop_ids
    # Special spellings inside text stay text.
    assert added["<|mask|>"] not in tok.encode("x = '<|mask|>'")
    # Every added id lands on its declared spelling.
    assert all(tok.hf.id_to_token(i) == t for t, i in added.items())


def test_dream_pretokenizer_follows_the_qwen2_regex(dream_dir):
    """The loaded tokenizer splits text as Qwen2's tokenizer does: `regex` (the module HF's slow
    tokenizer uses, which knows \\p{L}) finds the same pieces as its Oniguruma Split, before the
    byte-level mapping."""
    tok = load_model(dream_dir, device="cpu").tokenizer
    to_bytes_alphabet = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    for text in ["x = 12345;  y\n\n\n  z", "It'S he'll  naïve\r\n\tTAB", "a  +\n  b !!!\n", "αβγ δ1 ☃☃ 'LL"]:
        pieces = [p for p, _ in tok.hf.pre_tokenizer.pre_tokenize_str(text)]
        expected = [to_bytes_alphabet.pre_tokenize_str(p)[0][0] for p in regex.findall(QWEN2_PATTERN, text)]
        assert pieces == expected
    # Qwen2 splits numbers into single digits.
    assert all(len(tok.decode([i])) == 1 for i in tok.encode("12345"))


def test_dream_chat_template(dream_dir):
    tok = load_model(dream_dir, device="cpu").tokenizer
    ids = chat_prompt_ids(tok, "dream", [{"role": "user", "content": "Write a sort.\n"}])
    text = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nWrite a sort.\n<|im_end|>\n<|im_start|>assistant\n")
    assert tok.decode(ids, skip_special=False) == text
    # Same ids as tokenizing the rendered template with special tokens recognised (HF's path).
    tok.hf.encode_special_tokens = False
    try:
        assert ids == tok.hf.encode(text, add_special_tokens=False).ids
    finally:
        tok.hf.encode_special_tokens = True
    ids = chat_prompt_ids(tok, "dream", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
                          add_generation_prompt=False)
    assert tok.decode(ids, skip_special=False) == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"


LLADA_SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                  "<|mdm_mask|>"]


@pytest.fixture(scope="module")
def llada_dir(tmp_path_factory) -> Path:
    """llada-tiny weights + a small tokenizer.json with LLaDA's special tokens."""
    d = copy_fixture(LLADA, tmp_path_factory.mktemp("tok") / "llada-tok")
    hf = _train_bpe(400)
    hf.add_special_tokens(LLADA_SPECIALS)
    hf.save(str(d / "tokenizer.json"))
    sid = {t: hf.token_to_id(t) for t in LLADA_SPECIALS}
    (d / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>"}))
    raw = raw_config(d)
    raw.update(mask_token_id=sid["<|mdm_mask|>"], eos_token_id=sid["<|endoftext|>"], pad_token_id=sid["<|endoftext|>"])
    (d / "config.json").write_text(json.dumps(raw))
    return d


def test_llada_tokenizer_json_ids_and_chat_template(llada_dir):
    tok = load_model(llada_dir, device="cpu").tokenizer
    sid = {t: tok.token_id(t) for t in LLADA_SPECIALS}
    assert (tok.mask_id, tok.eos_id, tok.bos_id) == (sid["<|mdm_mask|>"], sid["<|endoftext|>"], sid["<|startoftext|>"])
    assert sid["<|eot_id|>"] in tok.stop_ids
    assert tok.expand_id is None
    msgs = [{"role": "system", "content": "  Be brief. "}, {"role": "user", "content": "hi\n"}]
    ids = chat_prompt_ids(tok, "llada", msgs)
    text = ("<|startoftext|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert ids[0] == sid["<|startoftext|>"] and ids.count(sid["<|startoftext|>"]) == 1
    assert tok.decode(ids, skip_special=False) == text


def test_special_ids_fall_back_to_tokenizer_roles(dream_dir, tmp_path):
    raw = raw_config(dream_dir)
    for key in ("mask_token_id", "pad_token_id", "eos_token_id"):
        raw.pop(key)
    added = json.loads((dream_dir / "added_tokens.json").read_text())
    ids = special_ids(dream_dir, raw)
    assert (ids.mask, ids.eos, ids.pad) == (added["<|mask|>"], added["<|endoftext|>"], added["<|endoftext|>"])
    empty = copy_fixture(DREAM, tmp_path / "no-ids", mask_token_id=None)
    with pytest.raises(ModelError, match="missing required key mask_token_id"):
        load_model(empty, device="cpu")


# --- memory, int8, describe ------------------------------------------------------------------------

DIFFUCODER_CONFIG = {  # Dream-v0-Instruct-7B shapes (spec §1.1)
    "model_type": "Dream", "architectures": ["DreamModel"], "hidden_size": 3584, "intermediate_size": 18944,
    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "hidden_act": "silu",
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_scaling": None, "max_position_embeddings": 131072,
    "vocab_size": 152064, "tie_word_embeddings": False, "mask_token_id": 151666, "pad_token_id": 151643,
    "bos_token_id": 151643, "eos_token_id": 151643, "torch_dtype": "bfloat16", "use_sliding_window": False,
}
LLADA8B_CONFIG = {  # LLaDA-8B-Instruct shapes (spec §2.1)
    "model_type": "llada", "d_model": 4096, "n_layers": 32, "n_heads": 32, "n_kv_heads": 32, "mlp_hidden_size": 12288,
    "mlp_ratio": 4, "activation_type": "silu", "block_type": "llama", "block_group_size": 1, "layer_norm_type": "rms",
    "layer_norm_with_affine": True, "bias_for_layer_norm": False, "rms_norm_eps": 1e-5, "include_bias": False,
    "include_qkv_bias": False, "rope": True, "rope_theta": 500000.0, "alibi": False, "attention_layer_norm": False,
    "max_sequence_length": 4096, "vocab_size": 126464, "embedding_size": 126464, "weight_tying": False,
    "scale_logits": False, "input_emb_norm": False, "mask_token_id": 126336, "eos_token_id": 126081,
    "pad_token_id": 126081,
}


def test_describe_model_from_config_only(tmp_path):
    d = tmp_path / "DiffuCoder-7B-Instruct"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(DIFFUCODER_CONFIG))
    info = describe_model(d)  # no weights at all: nothing is read but JSON
    assert info["family"] == "dream" and info["parameters"] == 7_615_616_512
    assert info["weights_bf16"] == 15_231_233_024  # the real index's total_size
    assert info["context_length"] == 2048 and info["logit_shift"] == 1  # capped at the usable context
    assert info["special_ids"]["mask"] == 151666 and info["special_ids"]["eos"] == 151643
    assert info["weights_int8"] < 0.51 * info["weights_bf16"]
    assert info["memory_bf16"] > info["weights_bf16"] and info["memory_int8"] < info["memory_bf16"]
    (d / "config.json").write_text(json.dumps(LLADA8B_CONFIG))
    info = describe_model(d)
    assert (info["family"], info["parameters"], info["weights_bf16"]) == ("llada", 8_015_581_184, 16_031_162_368)


def test_describe_model_of_fixture_matches_its_tensors():
    for d in (DREAM, LLADA):
        info = describe_model(d)
        assert info["parameters"] == sum(t.numel() for t in tensors_of(d).values())
        assert info["context_length"] == 128 and info["tokenizer"] is None
        assert info["checkpoint_bytes"] == (d / "model.safetensors").stat().st_size
        assert info["special_ids"]["mask"] == 511 and info["special_ids"]["eos"] == 510


def test_memory_check_refuses_with_needed_and_free(monkeypatch):
    cfg = foreign_config(DIFFUCODER_CONFIG, "dream", special_ids(Path("/nonexistent"), DIFFUCODER_CONFIG))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(15e9), int(80e9)))
    with pytest.raises(ModelError, match=r"^DiffuCoder-7B needs 1\d\.\d GB in bf16, 15\.0 GB free on cuda:0; try --int8$"):
        check_memory("DiffuCoder-7B", cfg, torch.device("cuda:0"), torch.bfloat16, int8=False)
    check_memory("DiffuCoder-7B", cfg, torch.device("cuda:0"), torch.bfloat16, int8=True)  # fits in int8
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(4e9), int(8e9)))
    with pytest.raises(ModelError, match=r"needs \d+\.\d GB in int8, 4\.0 GB free on cuda:0$"):
        check_memory("DiffuCoder-7B", cfg, torch.device("cuda:0"), torch.bfloat16, int8=True)
    check_memory("DiffuCoder-7B", cfg, torch.device("cpu"), torch.bfloat16, int8=False)  # CPU: no check


@pytest.mark.parametrize("fixture", [DREAM, LLADA], ids=["dream", "llada"])
def test_int8_weights_compute_the_dequantized_model(fixture):
    exp = expected(fixture)
    ids = torch.tensor([exp["input_ids"]])
    q8 = load_foreign(fixture, raw_config(fixture), device="cpu", int8=True)
    assert isinstance(q8.net.embed, Int8Embedding) and isinstance(q8.net.head, Int8Linear)
    assert isinstance(q8.net.blocks[1].mlp.w_down, Int8Linear) and q8.net.blocks[1].mlp.w_down.weight.dtype == torch.int8
    ref = load_model(fixture, device="cpu")
    fp_bytes = sum(p.numel() * p.element_size() for p in ref.net.parameters())
    q_bytes = sum(t.numel() * t.element_size() for t in [*q8.net.parameters(), *q8.net.buffers()])
    assert q_bytes < 0.3 * fp_bytes  # int8 vs float32 weights
    with torch.no_grad():  # the float model with every matrix replaced by q * scale
        for name, p in ref.net.named_parameters():
            if p.dim() == 2:
                q, s = quantize_rowwise(p)
                p.copy_(q.float() * s[:, None])
    torch.testing.assert_close(q8.net(ids), ref.net(ids), atol=1e-4, rtol=1e-4)
    # And it stays a usable approximation of the original model.
    agree = (q8.net(ids)[0].argmax(-1) == torch.tensor(exp["argmax"])).float().mean()
    assert agree >= 0.8


@pytest.mark.parametrize("family, turn_end", [("dream", "<|im_end|>"), ("llada", "<|eot_id|>")])
def test_an_instructed_fill_is_a_code_block_in_the_assistant_turn(family, turn_end, request):
    model = load_model(request.getfixturevalue(f"{family}_dir"), device="cpu")
    model.config = dataclasses.replace(model.config, max_seq_len=512)  # the fixtures' 128 holds no chat turn
    tok = model.tokenizer

    def prompt_for(context, reserve=16):
        return build_prompt(model, "def f(x):\n", "\n", path="m.py", context=context, reserve=reserve,
                            instruction="double x")

    prompt = prompt_for([("util.py", "X = 1\n")])
    before, after = tok.decode(prompt.before), tok.decode(prompt.after)
    assert "double x" in before and "util.py" in before and "X = 1" in before
    assert before.endswith("```\ndef f(x):\n") and before.rindex("assistant") < before.rindex("```")
    assert after.startswith("\n\n```") and prompt.after[-1] == tok.token_id(turn_end)
    # Short of room, the context file goes first; the instruction and the code around the hole stay.
    bare = prompt_for([])
    tight = prompt_for([("util.py", "X = 1\n")], reserve=model.config.max_seq_len - len(bare.before) - len(bare.after))
    assert "util.py" not in tok.decode(tight.before) and "double x" in tok.decode(tight.before)
    assert tight.after == bare.after
    # The sampler runs on that canvas like on any other (random weights: only the shape is checked).
    result = infill(model, "def f(x):\n", "\n", instruction="double x", options=DecodeOptions(max_tokens=8))
    assert len(result.token_ids) <= 8 and not set(result.token_ids) & tok.stop_ids


def test_an_instruction_needs_a_chat_template(tiny_model):
    with pytest.raises(InputError, match="no chat template"):
        build_prompt(tiny_model, "a", "b", instruction="x")
