"""GRU4Rec (Hidasi et al.): a 1-layer GRU over the item embeddings, last valid hidden state.

Padding sits after the valid items and the GRU runs left to right, so the state at the
last valid position never sees a pad: no packing needed (packing is slow on CPU).

    >>> from student.config import StudentConfig
    >>> model = GRU4Rec(100, StudentConfig(model="gru4rec"))
    >>> model.scores(torch.tensor([[3, 7, 100]]), torch.tensor([2])).shape
    torch.Size([1, 100])
"""
from __future__ import annotations

import torch  # noqa: F401  (doctest)
from torch import Tensor, nn

from student.models.base import SequentialRecommender, gather_last


class GRU4Rec(SequentialRecommender):
    def __init__(self, n_items, config, teacher_embeddings=None, item_popularity=None):
        super().__init__(n_items, config, teacher_embeddings, item_popularity)
        self.dropout = nn.Dropout(config.arch.dropout)
        self.gru = nn.GRU(self.dim, self.dim, num_layers=1, batch_first=True)

    def encode(self, history: Tensor, lengths: Tensor) -> Tensor:
        out, _ = self.gru(self.dropout(self.embed_history(history, lengths)))
        return gather_last(out, lengths)


__all__ = ["GRU4Rec"]
