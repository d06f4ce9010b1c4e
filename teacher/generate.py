"""One generation interface, two backends (METHOD §2.3).

`make_generator` picks vLLM (`generate_vllm.VllmGenerator`) or Hugging Face
(`generate_hf.HFGenerator`); both take the same prompts and return the parsed title
(text before the closing quote) of the top beam, in prompt order.

    >>> with make_generator(model_dir, adapter_dir, cfg.generation, device, max_new_tokens=24) as gen:  # doctest: +SKIP
    ...     titles = gen.generate(prompts)
"""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
import torch

from teacher.config import GenerationConfig
from teacher.prompts import RESPONSE_CLOSE

log = logging.getLogger(__name__)

AUTO_MAX_NEW_TOKENS_CAP = 64  # BIGRec generates at most ~64 tokens; measured: cuts 0.2% of Toys/Games titles


class Generator(Protocol):
    backend: str

    def generate(self, prompts: Sequence[str]) -> list[str]:
        """Parsed top-beam title per prompt, same order as `prompts`."""

    def close(self) -> None:
        """Free the model (and the vLLM engine)."""


class GeneratorContext:
    """Mixin: `with gen:` closes the backend on exit."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def choose_backend(config: GenerationConfig, device: torch.device) -> str:
    """'auto' = vllm on CUDA when vllm is importable; hf otherwise (vLLM beam search on CPU is ~10x slower)."""
    if config.backend != "auto":
        if config.backend == "vllm" and not vllm_available():
            raise RuntimeError("generation.backend='vllm' but vllm is not installed: pip install -e '.[cpu]' or '.[gpu]'")
        return config.backend
    return "vllm" if device.type == "cuda" and vllm_available() else "hf"


def stop_token_ids(tokenizer) -> list[int]:
    """EOS plus every token whose text contains the closing quote: generation ends at the quote."""
    vocab = len(tokenizer)
    texts = tokenizer.batch_decode([[i] for i in range(vocab)], skip_special_tokens=False)
    ids = [i for i, t in enumerate(texts) if RESPONSE_CLOSE in t]
    eos = tokenizer.eos_token_id
    return sorted(set(ids + ([eos] if eos is not None else [])))


def title_token_lengths(tokenizer, titles: Sequence[str]) -> np.ndarray:
    """Token count of each distinct title (no special tokens): what generation must reproduce."""
    unique = list(dict.fromkeys(titles))
    return np.array([len(ids) for ids in tokenizer(unique, add_special_tokens=False)["input_ids"]] or [1])


def _longest_plus_two(lengths: np.ndarray, cap: int) -> int:
    return int(min(lengths.max() + 2, cap))


def auto_max_new_tokens(tokenizer, titles: Sequence[str], cap: int = AUTO_MAX_NEW_TOKENS_CAP) -> int:
    """Longest title in tokens + 2 (the closing quote and EOS), at most `cap` (BIGRec: ~64)."""
    return _longest_plus_two(title_token_lengths(tokenizer, titles), cap)


def max_new_tokens_for(tokenizer, titles: Sequence[str], configured: int | None) -> tuple[int, dict]:
    """The generation length (`configured`, else automatic) and what it cuts, logged.

    A title longer than `max_new_tokens - 2` cannot be generated whole (its quote and EOS do
    not fit); grounding still maps the cut text by embedding, so a few cut titles are cheap,
    while every extra step is paid by each batch whose beams run long.
    """
    lengths = title_token_lengths(tokenizer, titles)
    max_new = int(configured or _longest_plus_two(lengths, AUTO_MAX_NEW_TOKENS_CAP))
    p50, p95, p99 = (int(np.percentile(lengths, q)) for q in (50, 95, 99))
    cut = int((lengths > max_new - 2).sum())
    summary = {"max_new_tokens": max_new, "title_tokens_p50": p50, "title_tokens_p95": p95,
               "title_tokens_p99": p99, "title_tokens_max": int(lengths.max()), "titles_cut": cut,
               "titles": int(len(lengths))}
    log.info("max_new_tokens %d (%s): titles take %d / %d / %d tokens at p50 / p95 / p99, longest %d; "
             "%d of %d titles (%.2f%%) are cut", max_new, "configured" if configured else "auto", p50, p95, p99,
             lengths.max(), cut, len(lengths), 100 * cut / len(lengths))
    return max_new, summary


def make_generator(model_dir: str | Path, adapter_dir: str | Path | None, config: GenerationConfig,
                   device: torch.device, dtype: torch.dtype, max_new_tokens: int) -> Generator:
    backend = choose_backend(config, device)
    log.info("generation backend %s (beams %d, max_new_tokens %d)", backend, config.num_beams, max_new_tokens)
    if backend == "vllm":
        from teacher.generate_vllm import VllmGenerator

        return VllmGenerator(model_dir, adapter_dir, config, device, dtype, max_new_tokens)
    from teacher.generate_hf import HFGenerator

    return HFGenerator(model_dir, adapter_dir, config, device, dtype, max_new_tokens)
