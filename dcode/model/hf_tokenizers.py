"""Tokenizers and chat templates of Hugging Face Dream / LLaDA model directories.

* LLaDA ships `tokenizer.json`: loaded as is.
* Dream ships `vocab.json` + `merges.txt` + `added_tokens.json` (a slow Qwen2 tokenizer): rebuilt
  as an equivalent `tokenizers` pipeline (NFC, Qwen2 split regex, byte-level BPE, the added tokens
  as special tokens at their declared ids). A Dream directory that has a `tokenizer.json` uses it.

Special ids are read from the files, never from constants (`special_ids`):
  mask: config `mask_token_id`, else the tokenizer's `mask_token`, else `<|mask|>` / `<|mdm_mask|>`;
  eos:  config `eos_token_id` (first of a list), else the tokenizer's `eos_token`;
  pad:  config `pad_token_id`, else the tokenizer's `pad_token`, else eos;
  bos:  the tokenizer's `bos_token` (Dream: `<|beginoftext|>`, which differs from config.json's
        `bos_token_id`), else generation_config / config `bos_token_id`;
  expand: `<|expand|>` when the vocabulary has it (DreamOn);
  stop: eos, pad, generation_config's eos ids and the end-of-turn tokens present
        (`<|im_end|>`, `<|dlm_pad|>`, `<|eot_id|>`, `<|endoftext|>`).
Role tokens are looked up among the added tokens (`added_tokens.json`, `tokenizer.json`'s
`added_tokens`, `tokenizer_config.json`'s `added_tokens_decoder`), so resolving them never builds
the BPE model.

A directory without any tokenizer file (the tiny test fixtures) gets a `MissingTokenizer`: it
knows the special ids, and everything that needs text raises a one-line ModelError.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from dcode.errors import ModelError
from dcode.model.tokenizer import Tokenizer

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
MASK_NAMES = ("<|mask|>", "<|mdm_mask|>")
EXPAND = "<|expand|>"
TERMINATOR_NAMES = ("<|im_end|>", "<|dlm_pad|>", "<|eot_id|>", "<|endoftext|>")
DREAM_DEFAULT_SYSTEM = "You are a helpful assistant."


def read_json(path: Path) -> dict | None:
    """A JSON object from `path`, None when the file does not exist; bad JSON is a ModelError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def tokenizer_kind(model_dir: Path) -> str | None:
    """Which tokenizer files the directory has: "tokenizer.json", "vocab.json+merges.txt" or None."""
    if (model_dir / "tokenizer.json").is_file():
        return "tokenizer.json"
    vocab, merges = (model_dir / "vocab.json").is_file(), (model_dir / "merges.txt").is_file()
    if vocab and merges:
        return "vocab.json+merges.txt"
    if vocab or merges:
        missing = "merges.txt" if vocab else "vocab.json"
        raise ModelError(f"{model_dir}: has {'vocab.json' if vocab else 'merges.txt'} but no {missing}")
    return None


def added_tokens(model_dir: Path) -> dict[str, int]:
    """Added (special) token -> id, from every file that declares them."""
    found: dict[str, int] = {}
    for entry in (read_json(model_dir / "tokenizer.json") or {}).get("added_tokens", []):
        found[entry["content"]] = int(entry["id"])
    config = read_json(model_dir / "tokenizer_config.json") or {}
    for tid, entry in config.get("added_tokens_decoder", {}).items():
        found[entry["content"]] = int(tid)
    path = model_dir / "added_tokens.json"
    for content, tid in (read_json(path) or {}).items():
        if not isinstance(tid, int) or isinstance(tid, bool):
            raise ModelError(f"{path}: id of {content!r} is not an integer")
        found[content] = tid
    return found


def _token_roles(model_dir: Path) -> dict[str, str]:
    """role ("bos_token", "eos_token", ...) -> token string, tokenizer_config.json winning."""
    roles: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        for role, value in (read_json(model_dir / name) or {}).items():
            if isinstance(value, dict):
                value = value.get("content")
            if role.endswith("_token") and isinstance(value, str):
                roles[role] = value
    return roles


@dataclass(frozen=True)
class SpecialIds:
    mask: int
    pad: int
    eos: int
    bos: int | None
    expand: int | None
    stop: frozenset[int]

    def as_dict(self) -> dict:
        return {
            "mask": self.mask, "pad": self.pad, "eos": self.eos, "bos": self.bos,
            "expand": self.expand, "stop": sorted(self.stop),
        }


def _config_id(raw: dict, key: str, source: str) -> int | None:
    value = raw.get(key)
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ModelError(f"{source}: {key} must be an integer, got {value!r}")
    return value


def special_ids(model_dir: Path, raw: dict) -> SpecialIds:
    """The special ids of a Dream/LLaDA directory (see the module docstring for the precedence)."""
    src = str(model_dir / "config.json")
    gen = read_json(model_dir / "generation_config.json") or {}
    tokens = added_tokens(model_dir)
    roles = {role: tokens.get(text) for role, text in _token_roles(model_dir).items()}

    mask = _config_id(raw, "mask_token_id", src)
    if mask is None:
        mask = roles.get("mask_token")
    if mask is None:
        mask = next((tokens[n] for n in MASK_NAMES if n in tokens), None)
    if mask is None:
        raise ModelError(f"{src}: missing required key mask_token_id (and no mask token in the tokenizer files)")
    eos = _config_id(raw, "eos_token_id", src)
    eos = eos if eos is not None else roles.get("eos_token")
    if eos is None:
        raise ModelError(f"{src}: missing required key eos_token_id (and no eos_token in the tokenizer files)")
    pad = _config_id(raw, "pad_token_id", src)
    pad = pad if pad is not None else roles.get("pad_token")
    pad = pad if pad is not None else eos
    bos = roles.get("bos_token")
    for source, data in ((model_dir / "generation_config.json", gen), (src, raw)):
        if bos is None:
            bos = _config_id(data, "bos_token_id", str(source))
    gen_eos = gen.get("eos_token_id")
    gen_eos = gen_eos if isinstance(gen_eos, list) else [gen_eos] if isinstance(gen_eos, int) else []
    stop = {eos, pad, *gen_eos, *(tokens[n] for n in TERMINATOR_NAMES if n in tokens)}
    return SpecialIds(mask, pad, eos, bos, tokens.get(EXPAND), frozenset(stop))


class ForeignTokenizer(Tokenizer):
    """A `Tokenizer` that also knows its family and (DreamOn) `<|expand|>` id. Whole texts are
    encoded at once (no per-line split), as the upstream tokenizer does."""

    def __init__(self, hf: HFTokenizer, family: str, ids: SpecialIds, source: str) -> None:
        super().__init__(hf, ids.mask, ids.pad, ids.eos, file_id=None, stop_ids=ids.stop, bos_id=ids.bos)
        self.family = family
        self.expand_id = ids.expand
        self.source = source


class _NoVocabulary:
    """Stands where the `tokenizers` object would be: any use raises the ModelError."""

    def __init__(self, message: str) -> None:
        object.__setattr__(self, "message", message)

    def __setattr__(self, name: str, value) -> None:  # Tokenizer.__init__ sets encode_special_tokens
        pass

    def __getattr__(self, name: str):
        raise ModelError(self.message)


class MissingTokenizer(ForeignTokenizer):
    """Stand-in for a directory without tokenizer files: the special ids (from config.json) work,
    anything that needs the vocabulary (encode, decode, vocab_size, chat templates) raises a
    one-line ModelError. Token-id-only use (tests, logits, the compat samplers) never needs it."""

    def __init__(self, family: str, ids: SpecialIds, model_dir: Path) -> None:
        message = (f"{model_dir}: no tokenizer files (tokenizer.json, or vocab.json + merges.txt); "
                   "this model can only be run on token ids")
        super().__init__(_NoVocabulary(message), family, ids, str(model_dir))  # type: ignore[arg-type]


def _bpe_from_vocab_merges(model_dir: Path) -> HFTokenizer:
    """Dream's slow Qwen2 tokenizer as a `tokenizers` pipeline."""
    vocab_path, merges_path = model_dir / "vocab.json", model_dir / "merges.txt"
    vocab = read_json(vocab_path)
    if not vocab or not all(isinstance(v, int) for v in vocab.values()):
        raise ModelError(f"{vocab_path}: expected an object of token -> integer id")
    merges: list[tuple[str, str]] = []
    try:
        lines = merges_path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ModelError(f"{merges_path}: not UTF-8 text") from None
    for n, line in enumerate(lines, 1):
        if not line or (n == 1 and line.startswith("#version")):
            continue
        pair = line.split(" ")
        if len(pair) != 2:
            raise ModelError(f"{merges_path}:{n}: expected two tokens separated by one space")
        merges.append((pair[0], pair[1]))
    try:
        hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    except Exception as exc:  # tokenizers raises bare Exceptions
        raise ModelError(f"{merges_path}: cannot build the BPE model ({str(exc).splitlines()[0]})") from None
    hf.normalizer = normalizers.NFC()
    hf.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    hf.decoder = decoders.ByteLevel()
    # Added tokens take the ids that follow the vocabulary, in id order; check every one lands
    # where the files say (a gap or clash would silently shift every special id).
    for content, tid in sorted(added_tokens(model_dir).items(), key=lambda kv: kv[1]):
        if content in vocab:
            if vocab[content] != tid:
                raise ModelError(
                    f"{model_dir}: token {content} has id {vocab[content]} in vocab.json but {tid} in added_tokens"
                )
            continue
        hf.add_special_tokens([AddedToken(content, special=True, normalized=False)])
        got = hf.token_to_id(content)
        if got != tid:
            raise ModelError(
                f"{model_dir}: added token {content} should have id {tid} but follows the vocabulary at {got}"
            )
    return hf


def load_tokenizer(model_dir: Path, family: str, ids: SpecialIds, required: bool = False) -> ForeignTokenizer:
    """The directory's tokenizer; a `MissingTokenizer` when it has no tokenizer files (or a
    ModelError with `required=True`)."""
    kind = tokenizer_kind(model_dir)
    if kind is None:
        if required:
            raise ModelError(f"{model_dir}: no tokenizer files (tokenizer.json, or vocab.json + merges.txt)")
        return MissingTokenizer(family, ids, model_dir)
    if kind == "tokenizer.json":
        path = model_dir / "tokenizer.json"
        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as exc:
            raise ModelError(f"{path}: cannot load tokenizer ({str(exc).splitlines()[0]})") from None
    else:
        hf = _bpe_from_vocab_merges(model_dir)
    return ForeignTokenizer(hf, family, ids, str(model_dir))


# --- chat templates -----------------------------------------------------------------------------


def _dream_chat(tok: ForeignTokenizer, messages: Sequence[dict], add_generation_prompt: bool) -> list[int]:
    """Qwen2.5 template without tools: `<|im_start|>{role}\\n{content}<|im_end|>\\n` per message,
    a default system message when the first one is not a system message, no BOS."""
    start, end = tok.token_id("<|im_start|>"), tok.token_id("<|im_end|>")
    if not messages or messages[0]["role"] != "system":
        messages = [{"role": "system", "content": DREAM_DEFAULT_SYSTEM}, *messages]
    ids: list[int] = []
    for m in messages:
        ids += [start, *tok.encode(f"{m['role']}\n{m['content']}"), end, *tok.encode("\n")]
    if add_generation_prompt:
        ids += [start, *tok.encode("assistant\n")]
    return ids


def _llada_chat(tok: ForeignTokenizer, messages: Sequence[dict]) -> list[int]:
    """Llama-3 style: BOS before the first message, `<|start_header_id|>{role}<|end_header_id|>\\n\\n
    {content | trim}<|eot_id|>` per message, then always the assistant header."""
    head, head_end, eot = (tok.token_id(t) for t in ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"))
    bos = tok.bos_id if tok.bos_id is not None else tok.token_id("<|startoftext|>")
    ids = [bos]
    for m in messages:
        ids += [head, *tok.encode(m["role"]), head_end, *tok.encode("\n\n" + m["content"].strip()), eot]
    return ids + [head, *tok.encode("assistant"), head_end, *tok.encode("\n\n")]


def chat_prompt_ids(
    tokenizer: ForeignTokenizer, family: str, messages: Iterable[dict], add_generation_prompt: bool = True
) -> list[int]:
    """Token ids of `messages` ([{"role", "content"}]) under the family's chat template, exactly
    as the reference template renders and tokenizes them. LLaDA's template always appends the
    assistant header (it ignores add_generation_prompt)."""
    messages = list(messages)
    if family == "dream":
        return _dream_chat(tokenizer, messages, add_generation_prompt)
    if family == "llada":
        return _llada_chat(tokenizer, messages)
    raise ModelError(f"no chat template for model family {family!r}")


CHAT_TURN_END = {"dream": "<|im_end|>", "llada": "<|eot_id|>"}


def chat_infill_frame(tokenizer: ForeignTokenizer, family: str, user_message: str) -> tuple[list[int], list[int]]:
    """(ids before the code, ids after it) for answering `user_message` with a code block whose
    middle is the hole: the assistant's reply is the file itself, fenced, with everything but the
    hole already written. A bidirectional model fills it seeing the instruction and both sides."""
    head = chat_prompt_ids(tokenizer, family, [{"role": "user", "content": user_message}])
    return head + tokenizer.encode("```\n"), tokenizer.encode("\n```") + [tokenizer.token_id(CHAT_TURN_END[family])]
