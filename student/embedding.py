"""Item embeddings with collaborative embedding distillation (METHOD §4.2).

`e_i = b_i + w_ed * g(z_i)`: `b` is the student's own ID embedding (the "collaborative
offset"), `z_i` the teacher's embedding of item i (width d read from the tensor), `g` a
learnable projector to the student's size. `e` feeds the input sequence; the output scores
use `b` (or `e` when `tie_output`).

Cost: g runs only on the distinct ids a batch needs (a few thousand rows; every id of the
batch under torch.compile), never on the whole catalogue, except for `output_weights()`
with `tie_output` (full table each call).
Serving: `bake()` computes `e` for the whole catalogue once and drops the teacher table and
g, so a served distilled student costs what a plain one does (lookup, no projection) and its
checkpoint no longer carries the teacher's d-wide table (`dllm2rec student export`).
The teacher table is a bfloat16 buffer (half the memory, fp32 range); g's first layer
runs in bfloat16 on CUDA and on CPUs with native bf16 (AVX512-BF16 / AMX: ~3x faster
there), else in float32. bf16 rounds g(z) to ~0.2% - far below the training noise.

    >>> import torch
    >>> from student.config import EmbeddingDistillConfig
    >>> emb = ItemEmbedding(5, 8, torch.randn(5, 32), EmbeddingDistillConfig())
    >>> emb(torch.tensor([[0, 3, 5]])).shape, emb.output_weights().shape
    (torch.Size([1, 3, 8]), torch.Size([5, 8]))
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from student.config import EmbeddingDistillConfig



def _cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


CPU_BF16 = _cpu_has_bf16()
BAKE_ROWS = 65536  # items projected at a time by `bake` (a float32 [rows, d] copy of the teacher rows)


def standardise(z: Tensor) -> Tensor:
    """Centre over items and scale to unit RMS (float32).

    LLM hidden states share a large common component and have a scale of their own; an
    affine change of g's input leaves the model class unchanged (g is affine in z) but
    gives g a well-conditioned start. A constant table becomes zeros.
    """
    z = z.float()
    z = z - z.mean(dim=0, keepdim=True)
    return z / z.square().mean().sqrt().clamp_min(1e-12)


class ItemEmbedding(nn.Module):
    """Input / output item vectors of a student; pad id = `n_items` gives a zero vector."""

    def __init__(
        self,
        n_items: int,
        dim: int,
        teacher_embeddings: Tensor | None = None,
        ed: EmbeddingDistillConfig | None = None,
    ):
        super().__init__()
        ed = ed or EmbeddingDistillConfig()
        self.n_items, self.pad_id, self.dim = n_items, n_items, dim
        self.ids = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        nn.init.normal_(self.ids.weight, 0.0, 0.02)
        with torch.no_grad():
            self.ids.weight[n_items].zero_()
        self.use_teacher = teacher_embeddings is not None and ed.enabled
        self.baked = False
        self.weight, self.tie_output = float(ed.weight), bool(ed.tie_output and self.use_teacher)
        if not self.use_teacher:
            return
        z = torch.as_tensor(teacher_embeddings)
        if z.dim() != 2 or z.shape[0] != n_items:
            raise ValueError(f"teacher_embeddings must be [n_items={n_items}, d], got {tuple(z.shape)}")
        if not torch.isfinite(z.float()).all():
            raise ValueError("teacher_embeddings contain NaN or inf")
        z = standardise(z)
        table = torch.cat([z, z.new_zeros(1, z.shape[1])])  # row n_items: the pad
        self.register_buffer("teacher", table.to(torch.bfloat16))
        # g = rest(first(z)): linear, or a 2-layer MLP with hidden width dim (d x dim dominates)
        self.first = nn.Linear(z.shape[1], dim)
        self.rest: nn.Module = nn.Identity() if ed.projector == "linear" else nn.Sequential(nn.GELU(), nn.Linear(dim, dim))

    @property
    def teacher_dim(self) -> int | None:
        return int(self.teacher.shape[1]) if self.use_teacher and not self.baked else None

    @torch.no_grad()
    def bake(self) -> None:
        """Serving only: replace `b + w * g(z)` by one precomputed input table [n_items + 1, dim].

        Inference gives the same vectors (g is applied row by row, once instead of per
        request); the teacher table and g's weights leave the module (and its state dict).
        A baked module cannot learn g any more, so it is not for training.
        """
        if not self.use_teacher or self.baked:
            return
        ids = torch.arange(self.n_items, device=self.ids.weight.device)
        chunks = [self._embed(ids[lo:lo + BAKE_ROWS], True) for lo in range(0, self.n_items, BAKE_ROWS)]
        table = torch.cat(chunks + [self.ids.weight.new_zeros(1, self.dim)])
        del self.teacher, self.first, self.rest
        self.register_buffer("input_table", table.float())
        self.baked = True

    def project(self, rows: Tensor) -> Tensor:
        """`g(z)` for teacher rows [m, d] (bf16 buffer rows) -> float32 [m, dim]."""
        if rows.device.type == "cuda" or (rows.device.type == "cpu" and CPU_BF16):
            h = F.linear(rows, self.first.weight.to(rows.dtype), self.first.bias.to(rows.dtype)).float()
        else:
            h = self.first(rows.float())
        return self.rest(h)

    def _projected(self, ids: Tensor) -> Tensor:
        """`g(z_ids)` [*ids.shape, dim], projecting each distinct id once (eager: cheaper on CPU).
        Compiled, every id is projected: `unique` has a data-dependent size (a graph break and a
        host sync, which rule out CUDA graphs); the values are the same."""
        if torch.compiler.is_compiling():
            return self.project(self.teacher[ids])
        uniq, inverse = torch.unique(ids, return_inverse=True)
        return self.project(self.teacher.index_select(0, uniq))[inverse]

    def _embed(self, ids: Tensor, with_teacher: bool) -> Tensor:
        if with_teacher and self.baked:
            return self.input_table[ids]
        e = self.ids(ids)
        if with_teacher:
            e = e + self.weight * self._projected(ids)
        return e

    def forward(self, ids: Tensor) -> Tensor:
        """Input vectors `e` for a history [B, L] (pad -> zeros), [B, L, dim]."""
        e = self._embed(ids, self.use_teacher)
        return e * (ids != self.pad_id).unsqueeze(-1).to(e.dtype)

    def output_embed(self, ids: Tensor) -> Tensor:
        """Output vectors of chosen items (ids in 0..n_items-1): the rows of `output_weights()`."""
        return self._embed(ids, self.tie_output)

    def output_weights(self) -> Tensor:
        """Output vectors of the whole catalogue [n_items, dim]: `b`, or `e` if tied."""
        b = self.ids.weight[: self.n_items]
        if not self.tie_output:
            return b
        if self.baked:
            return self.input_table[: self.n_items]
        return b + self.weight * self.project(self.teacher[: self.n_items])
