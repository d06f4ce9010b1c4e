"""Tiny offline teacher fixtures: a BPE tokenizer trained in memory and a random tiny Llama.

Nothing is downloaded: the tokenizer is trained on the dataset's titles and the prompt
template, the model is `LlamaConfig(...)` with random weights, both saved as a normal
Hugging Face folder so every loader in `teacher/` reads them like a real model.
"""
from __future__ import annotations

from pathlib import Path

import torch

from pipeline.dataset import load_dataset
from pipeline.prepare import DataConfig, prepare_dataset
from teacher.config import ALPACA_TEMPLATE, INPUT, INSTRUCTION, TeacherConfig
from teacher.prompts import DOMAINS


def tiny_tokenizer(corpus: list[str], vocab_size: int = 400):
    """Byte-level BPE trained on `corpus`; EOS only (no pad token, like many base LMs)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>")


def tiny_llama_dir(out: Path, corpus: list[str], seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """Save a random tiny Llama + tokenizer to `out` (a normal HF model folder)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tiny_tokenizer(corpus)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=2048, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def template_corpus(titles: list[str]) -> list[str]:
    words = [" ".join(w) for w in DOMAINS.values()]
    return [ALPACA_TEMPLATE, INSTRUCTION, INPUT, '"', '", "', *words, *titles] * 3


def demo_dataset(out: Path, users: int = 60, franchises: int = 2):
    """A small demo dataset (synthetic video games) through the data stage."""
    path = prepare_dataset(DataConfig(reader="demo", demo_users=users, demo_franchises_per_genre=franchises), out)
    return load_dataset(path)


def tiny_config(model_dir: Path, **overrides) -> TeacherConfig:
    """A config that runs in seconds on the tiny model."""
    cfg = TeacherConfig.model_validate({
        "model": {"name": str(model_dir), "device": "cpu"},
        "finetune": {"n_samples": 16, "n_valid": 8, "epochs": 1, "batch_size": 8},
        "generation": {"backend": "hf", "num_beams": 2, "batch_size": 8, "max_new_tokens": 6},
        "ground": {"top_n": 10, "embed_batch_size": 16},
        "shard_size": 16,
    })
    return cfg.model_copy(update=overrides)
