"""Tokenizers built with the ``tokenizers`` package: a BERT ``tokenizer.json``, and a GGUF's GPT-2 BPE metadata.

GGUF (``tokenizer.ggml.model == "gpt2"``): the vocabulary is ``tokenizer.ggml.tokens`` (byte-level strings),
the merges ``tokenizer.ggml.merges`` ("a b" strings, rank = position), control tokens (token_type 3) are special
tokens that the text never splits. The pre-tokenizer follows ``tokenizer.ggml.pre``: "smollm" splits every digit
on its own and then applies the GPT-2 regex (SmolLM2's tokenizer.json: Digits(individual) + ByteLevel);
the other pre-tokenizer names are refused rather than guessed.
"""

from __future__ import annotations

from pathlib import Path

GGUF_PRE_TOKENIZERS = ("smollm", "gpt2", "default")
TOKEN_TYPE_CONTROL = 3


def bert_tokenizer(directory):
    """The ``tokenizer.json`` of a BERT checkpoint directory (adds [CLS] ... [SEP])."""
    return json_tokenizer(directory)


def json_tokenizer(directory):
    """The ``tokenizer.json`` of a Hugging Face checkpoint directory, padding off."""
    from tokenizers import Tokenizer

    path = Path(directory) / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"checkpoint directory {str(directory)!r} has no tokenizer.json")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise ValueError(f"{str(path)!r} is not a valid tokenizer.json ({' '.join(str(exc).split())[:100]})") from None
    tok.no_padding()
    return tok


def gguf_tokenizer(metadata: dict):
    """A byte-level BPE ``tokenizers.Tokenizer`` from GGUF ``tokenizer.ggml.*`` metadata (see module docstring)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    kind = metadata.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise ValueError(f"GGUF tokenizer model {kind!r} is not supported; allowed: 'gpt2' (byte-level BPE)")
    pre = metadata.get("tokenizer.ggml.pre") or "default"
    if pre not in GGUF_PRE_TOKENIZERS:
        raise ValueError(f"GGUF pre-tokenizer {pre!r} is not supported; allowed: {', '.join(GGUF_PRE_TOKENIZERS)}")
    tokens = list(metadata["tokens"])
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in metadata["merges"]]
    try:
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    except Exception as exc:  # tokenizers raises a plain Exception for an inconsistent vocabulary/merges
        raise ValueError(f"GGUF tokenizer metadata is inconsistent ({' '.join(str(exc).split())[:100]})") from None
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.pre_tokenizer = (pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
                         if pre == "smollm" else byte_level)
    tok.decoder = decoders.ByteLevel()
    types = metadata.get("token_type") or []
    special = [AddedToken(tokens[i], special=True, normalized=False)
               for i, t in enumerate(types) if t == TOKEN_TYPE_CONTROL]
    tok.add_special_tokens(special)
    return tok
