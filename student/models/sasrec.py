"""SASRec (Kang & McAuley): learned positions + causal self-attention blocks.

Block (as in the original and the DROS / DLLM2Rec code): `q = LN(x)`,
`x = q + Attn(q, x, x)` (causal), `x = LN(x) + FFN(LN(x))`, pads zeroed after each block,
final LayerNorm, read the last valid position. Padding sits after the valid items, so the
causal mask alone keeps pads out of every valid position.

    >>> from student.config import StudentConfig
    >>> model = SASRec(100, StudentConfig(model="sasrec"))
    >>> model.scores(torch.tensor([[3, 7, 100]]), torch.tensor([2])).shape
    torch.Size([1, 100])
"""
from __future__ import annotations

import torch  # noqa: F401  (doctest)
import torch.nn.functional as F
from torch import Tensor, nn

from student.models.base import SequentialRecommender, gather_last, valid_mask


class Block(nn.Module):
    """One pre-LN causal self-attention block with a point-wise feed-forward net."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by sasrec_heads={heads}")
        self.heads, self.p = heads, dropout
        self.ln_attn, self.ln_ffn = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim), nn.Dropout(dropout))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, L, D = x.shape
        q = self.ln_attn(x)
        split = lambda t: t.view(B, L, self.heads, D // self.heads).transpose(1, 2)  # noqa: E731
        k, v = self.kv(x).chunk(2, dim=-1)
        att = F.scaled_dot_product_attention(
            split(self.q(q)), split(k), split(v), is_causal=True, dropout_p=self.p if self.training else 0.0
        )
        x = q + self.drop(self.proj(att.transpose(1, 2).reshape(B, L, D)))
        h = self.ln_ffn(x)
        return h + self.ffn(h)


class SASRec(SequentialRecommender):
    def __init__(self, n_items, config, teacher_embeddings=None, item_popularity=None):
        super().__init__(n_items, config, teacher_embeddings, item_popularity)
        a = config.arch
        self.positions = nn.Embedding(self.max_len, self.dim)
        nn.init.normal_(self.positions.weight, 0.0, 0.02)
        self.dropout = nn.Dropout(a.dropout)
        self.blocks = nn.ModuleList(Block(self.dim, a.sasrec_heads, a.dropout) for _ in range(a.sasrec_blocks))
        self.ln_out = nn.LayerNorm(self.dim)

    def encode(self, history: Tensor, lengths: Tensor) -> Tensor:
        self.check_length(history)
        mask = valid_mask(history, lengths).unsqueeze(-1).to(self.positions.weight.dtype)
        x = self.embed_history(history, lengths) + self.positions.weight[: history.shape[1]]
        x = self.dropout(x) * mask
        for block in self.blocks:
            x = block(x) * mask
        return gather_last(self.ln_out(x), lengths)
