"""Byte-level BPE tokenizer (HF `tokenizers`) with the special tokens the diffusion sampler needs.

Special tokens: `<|mask|>` (a slot to denoise), `<|pad|>` (filler a variable-length hole leaves
unused), `<|endoftext|>` (end of a document), `<|file|>` (introduces `path\\n` + contents of a
context file). Plain text never encodes to special tokens: `encode` treats their spelling as
ordinary bytes, so a source file that contains "<|mask|>" cannot inject a mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from dcode.errors import ModelError

MASK = "<|mask|>"
PAD = "<|pad|>"
EOS = "<|endoftext|>"
FILE = "<|file|>"
SPECIAL_TOKENS = [MASK, PAD, EOS, FILE]


def _byte_decoder() -> dict[str, int]:
    """The GPT-2 byte-level alphabet: printable stand-in character -> byte value."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars)}


class Tokenizer:
    """Wraps a `tokenizers.Tokenizer`; knows the ids of mask, pad, end-of-text and file-header."""

    source = "tokenizer.json"  # where the vocabulary came from, for error messages

    def __init__(
        self,
        hf: HFTokenizer,
        mask_id: int,
        pad_id: int,
        eos_id: int,
        file_id: int | None = None,
        stop_ids: Iterable[int] = (),
        split_lines: bool = False,
        bos_id: int | None = None,
    ) -> None:
        self.hf = hf
        # Spellings of special tokens inside plain text are encoded as ordinary bytes.
        self.hf.encode_special_tokens = True
        self.mask_id = mask_id
        self.pad_id = pad_id
        self.eos_id = eos_id
        self.file_id = file_id
        # A model whose first position must hold a real token (Dream's shifted logits) sets this.
        self.bos_id = bos_id
        # Ids that end a generation (e.g. an instruct model's end-of-turn) besides pad and eos.
        self.stop_ids = frozenset(stop_ids) | {pad_id, eos_id}
        # dcode's own tokenizer encodes each line on its own, so a line boundary is always a
        # token boundary: a hole made of whole lines tokenizes the same way in training and at
        # inference, whatever surrounds it. Foreign tokenizers encode whole texts, as trained.
        self.split_lines = split_lines

    @classmethod
    def from_hf(cls, hf: HFTokenizer, source: str = "tokenizer.json") -> "Tokenizer":
        ids = {tok: hf.token_to_id(tok) for tok in SPECIAL_TOKENS}
        missing = [tok for tok, i in ids.items() if i is None]
        if missing:
            raise ModelError(f"{source}: missing special tokens {', '.join(missing)}")
        return cls(hf, ids[MASK], ids[PAD], ids[EOS], ids[FILE], split_lines=True)

    @classmethod
    def load(cls, path: Path) -> "Tokenizer":
        try:
            hf = HFTokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad files
            raise ModelError(f"{path}: cannot load tokenizer ({str(exc).splitlines()[0]})") from None
        return cls.from_hf(hf, source=str(path))

    def save(self, path: Path) -> None:
        self.hf.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self.hf.get_vocab_size(with_added_tokens=True)

    @cached_property
    def special_ids(self) -> frozenset[int]:
        return frozenset(self.hf.get_added_tokens_decoder().keys())

    def token_id(self, token: str) -> int:
        """Id of a special token by spelling; ModelError when the vocabulary lacks it."""
        tid = self.hf.token_to_id(token)
        if tid is None:
            raise ModelError(f"{self.source}: the tokenizer has no {token} token")
        return tid

    def encode(self, text: str) -> list[int]:
        if not self.split_lines:
            return self.hf.encode(text, add_special_tokens=False).ids
        lines = text.splitlines(keepends=True)
        if not lines:
            return []
        return [i for enc in self.hf.encode_batch(lines, add_special_tokens=False) for i in enc.ids]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        return self.hf.decode(list(ids), skip_special_tokens=skip_special)

    def encode_file_header(self, path: str) -> list[int]:
        """`<|file|>path\\n`: how a file (context or the one being edited) is introduced."""
        if self.file_id is None:
            return self.encode(f"// {path}\n")
        return [self.file_id, *self.encode(f"{path}\n")]

    @cached_property
    def _byte_table(self) -> list[bytes]:
        decoder = _byte_decoder()
        table: list[bytes] = []
        for i in range(self.vocab_size):
            piece = self.hf.id_to_token(i) or ""
            if i in self.special_ids:
                table.append(b"")
            elif piece and all(ch in decoder for ch in piece):
                table.append(bytes(decoder[ch] for ch in piece))
            else:
                table.append(self.hf.decode([i]).encode("utf-8"))
        return table

    @cached_property
    def whitespace_ids(self) -> list[int]:
        """Ordinary tokens that are only whitespace (indentation, newlines)."""
        return [i for i, b in enumerate(self._byte_table) if b and not b.strip()]

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes one token stands for (empty for special tokens)."""
        return self._byte_table[token_id]

    def extending(self, lead: bytes) -> list[int]:
        """Ordinary tokens that can start a text beginning with `lead`: those that begin with
        it, and those it begins with (token healing's choices for a hole's first slot)."""
        return [i for i, b in enumerate(self._byte_table) if b and (b.startswith(lead) or lead.startswith(b))]

    def char_spans(self, ids: list[int]) -> list[tuple[int, int]]:
        """Character span of each token inside `decode(ids)`; tokens that split a multi-byte
        character get the span of the whole character."""
        spans: list[tuple[int, int]] = []
        data = b""
        prev_chars = 0
        for i in ids:
            data += self.token_bytes(i)
            chars = len(data.decode("utf-8", errors="ignore"))
            spans.append((prev_chars, max(chars, prev_chars)))
            prev_chars = chars
        return spans


def train_tokenizer(texts: Iterable[str] | Iterator[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE on source code. Special tokens take ids 0..3."""
    hf = HFTokenizer(models.BPE())
    # No normaliser and no prefix space: the round trip must be byte-exact for any UTF-8 text.
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    # Trained on lines, the way `encode` splits text (see Tokenizer.split_lines).
    lines = (line for text in texts for line in text.splitlines(keepends=True))
    hf.train_from_iterator(lines, trainer=trainer)
    return Tokenizer.from_hf(hf)
