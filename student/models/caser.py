"""Caser (Tang & Wang): horizontal and vertical convolutions over the L x dim history matrix.

Horizontal filters of heights 2, 3, 4 (`caser_filters` each), ReLU, max over the windows
that start inside the history (one window at 0 when the history is shorter than the
filter: zero rows fill it, as zero padding). Vertical filters (`caser_vertical`) weight
the items by RECENCY (slot 0 = the most recent item), so a filter means the same thing for
every history length and appended padding changes nothing. Then dropout and a linear layer
to `dim`. Works for any L <= arch.max_len.

    >>> from student.config import StudentConfig
    >>> model = Caser(100, StudentConfig(model="caser"))
    >>> model.scores(torch.tensor([[3, 7, 100]]), torch.tensor([2])).shape
    torch.Size([1, 100])
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from student.models.base import SequentialRecommender, valid_mask

HEIGHTS = (2, 3, 4)


class Caser(SequentialRecommender):
    def __init__(self, n_items, config, teacher_embeddings=None, item_popularity=None):
        super().__init__(n_items, config, teacher_embeddings, item_popularity)
        a = config.arch
        self.horizontal = nn.ModuleList(nn.Conv1d(self.dim, a.caser_filters, h) for h in HEIGHTS)
        for conv in self.horizontal:  # init as in the reference code
            nn.init.xavier_normal_(conv.weight)
            nn.init.constant_(conv.bias, 0.1)
        self.vertical = nn.Parameter(torch.empty(self.max_len, a.caser_vertical))  # [recency slot, filter]
        nn.init.xavier_normal_(self.vertical)
        self.dropout = nn.Dropout(a.dropout)
        self.fc = nn.Linear(a.caser_filters * len(HEIGHTS) + a.caser_vertical * self.dim, self.dim)

    def encode(self, history: Tensor, lengths: Tensor) -> Tensor:
        self.check_length(history)
        B, L = history.shape
        x = self.embed_history(history, lengths)  # [B, L, D], zero beyond the history
        pad = max(HEIGHTS) - L
        xt = F.pad(x.transpose(1, 2), (0, max(pad, 0)))  # [B, D, max(L, 4)]
        pooled = []
        for h, conv in zip(HEIGHTS, self.horizontal):
            c = F.relu(conv(xt))  # [B, F, windows]
            starts = torch.arange(c.shape[2], device=x.device).unsqueeze(0)
            ok = starts < (lengths - h + 1).clamp_min(1).unsqueeze(1)
            pooled.append(c.masked_fill(~ok.unsqueeze(1), float("-inf")).amax(dim=2))
        # recency view: slot r holds item lengths-1-r (zeros beyond the history)
        slot = lengths.unsqueeze(1) - 1 - torch.arange(L, device=x.device).unsqueeze(0)
        recent = x.gather(1, slot.clamp_min(0).unsqueeze(-1).expand(-1, -1, self.dim))
        recent = recent * valid_mask(history, lengths).unsqueeze(-1).to(x.dtype)  # slot r < length
        v = torch.einsum("brd,rf->bfd", recent, self.vertical[:L]).reshape(B, -1)
        return self.fc(self.dropout(torch.cat(pooled + [v], dim=1)))
