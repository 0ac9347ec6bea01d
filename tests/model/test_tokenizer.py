"""The tokenizer: exact round trips and no special tokens from plain text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dcode.model.tokenizer import SPECIAL_TOKENS, Tokenizer

CODE_ALPHABET = st.characters(codec="utf-8") | st.sampled_from(list(" \t\r\n    名前éß_{}()<|>"))


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=CODE_ALPHABET, max_size=200))
def test_round_trip_is_exact(tiny_tokenizer, text):
    assert tiny_tokenizer.decode(tiny_tokenizer.encode(text)) == text


@settings(max_examples=100, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(SPECIAL_TOKENS) | st.text(max_size=10), max_size=8),
)
def test_plain_text_never_encodes_special_tokens(tiny_tokenizer, pieces):
    text = "".join(pieces)
    ids = tiny_tokenizer.encode(text)
    assert not set(ids) & tiny_tokenizer.special_ids
    assert tiny_tokenizer.decode(ids) == text


def test_whitespace_styles_survive(tiny_tokenizer):
    for text in ["if x:\r\n    y = 1  \r\n", "\tdef f():\n\t\treturn 1\n", "  \n\n  trailing   ", "naïve = \"ünïcödé\" # 名前\n"]:
        assert tiny_tokenizer.decode(tiny_tokenizer.encode(text)) == text


def test_line_boundaries_are_token_boundaries(tiny_tokenizer):
    text = "def add(a, b):\n    return a + b\n"
    whole = tiny_tokenizer.encode(text)
    first, second = text.splitlines(keepends=True)
    assert whole == tiny_tokenizer.encode(first) + tiny_tokenizer.encode(second)


def test_special_ids_and_save_load(tiny_tokenizer, tmp_path):
    ids = {tiny_tokenizer.mask_id, tiny_tokenizer.pad_id, tiny_tokenizer.eos_id, tiny_tokenizer.file_id}
    assert len(ids) == 4
    path = tmp_path / "tokenizer.json"
    tiny_tokenizer.save(path)
    again = Tokenizer.load(path)
    assert again.mask_id == tiny_tokenizer.mask_id
    assert again.encode("x = 1\n") == tiny_tokenizer.encode("x = 1\n")
    header = again.encode_file_header("pkg/mod.py")
    assert header[0] == again.file_id and again.decode(header) == "pkg/mod.py\n"


def test_char_spans_cover_the_text(tiny_tokenizer):
    text = "naïve = 名前\n"
    ids = tiny_tokenizer.encode(text)
    spans = tiny_tokenizer.char_spans(ids)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    assert all(a <= b for a, b in spans)
