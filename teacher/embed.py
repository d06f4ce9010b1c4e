"""Text embeddings from the *base* model: last layer, last token, not normalised (METHOD §2.4).

"Last layer" is the transformer's final hidden state after its final norm (what
`hidden_states[-1]` is in HF Llama and what vLLM's LAST pooler reads). Batches are
left-padded and the position ids come from the attention mask, so a text's embedding
does not depend on which texts share its batch. Identical texts are embedded once, so
items with identical titles get identical embeddings (and tie in the ranking).

    >>> emb = TextEmbedder(model, tokenizer, torch.device("cpu"), batch_size=64)   # doctest: +SKIP
    >>> emb(["Star Blaster (PS4)", "Turbo Rally (PC)"]).shape                      # doctest: +SKIP
    (2, 576)
"""
from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


class TextEmbedder:
    """Batched last-token embeddings; `known` maps texts to precomputed vectors (e.g. item titles)."""

    def __init__(self, model, tokenizer, device: torch.device, batch_size: int = 64, max_length: int = 256):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.batch_size, self.max_length = batch_size, max_length
        self.backbone = model.base_model  # LlamaModel etc.: final norm applied, no LM head
        self.known: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def _embed_unique(self, texts: list[str], desc: str, progress: bool) -> np.ndarray:
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        fallback = self.tokenizer.eos_token_id
        ids = [x if len(x) else [fallback] for x in ids]  # an empty generation still gets a vector
        order = np.argsort([len(x) for x in ids], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        start = time.perf_counter()
        bar = tqdm(range(0, len(order), self.batch_size), desc=desc, unit="batch", disable=not progress, leave=False)
        for lo in bar:
            rows = order[lo: lo + self.batch_size]
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt", padding_side="left")
            mask = batch["attention_mask"].to(self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            hidden = self.backbone(input_ids=batch["input_ids"].to(self.device), attention_mask=mask,
                                   position_ids=positions).last_hidden_state
            out[rows] = hidden[:, -1, :].float().cpu().numpy()
            bar.set_postfix(texts_per_s=f"{min(lo + self.batch_size, len(order)) / (time.perf_counter() - start):.0f}")
        return out

    def __call__(self, texts: Sequence[str], desc: str = "embed", progress: bool = False) -> np.ndarray:
        """[len(texts), d] float32; texts seen before (or in `known`) are not recomputed."""
        texts = list(texts)
        unique = [t for t in dict.fromkeys(texts) if t not in self.known]
        if unique:
            start = time.perf_counter()
            vectors = self._embed_unique(unique, desc, progress)
            log.info("%s: %d texts in %.1fs (%.0f/s)", desc, len(unique), time.perf_counter() - start,
                     len(unique) / max(time.perf_counter() - start, 1e-9))
            self.known.update(zip(unique, vectors))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.known[t] for t in texts])

    def remember(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Reuse vectors computed earlier (a generation that echoes a title costs nothing)."""
        self.known.update(zip(texts, vectors))


def embed_titles(embedder: TextEmbedder, titles: Sequence[str], progress: bool = True) -> np.ndarray:
    """Item-title embedding matrix [n_items, d] (identical titles embedded once)."""
    return embedder(titles, desc="embed titles", progress=progress)
