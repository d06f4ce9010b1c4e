"""The one interface every student implements (RecBole style: `scores`, `loss`).

A subclass only writes `encode(history, lengths) -> [B, dim]`; scoring against the full
catalogue and the losses (BCE + DRO + DLLM2Rec ranking distillation) live here once.

Conventions: `history` is `[B, L]` long, oldest item first, padded at the END with
`pad_id = n_items`; `lengths` is `[B]` (0 allowed: an empty history). Positions
`>= lengths` are ignored whatever they hold; an empty history gets a learned constant
representation (the encoder's output for an all-zero input).

    >>> model = build_model(StudentConfig(model="gru4rec"), n_items=100)   # doctest: +SKIP
    >>> model.scores(history, lengths).shape                               # doctest: +SKIP
    torch.Size([B, 100])
"""
from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, fields
from typing import Optional

import torch
from torch import Tensor, nn

from student.config import StudentConfig
from student.embedding import ItemEmbedding
from student.losses import (
    bce_loss,
    combine_weights,
    confidence_weights_candidate,
    confidence_weights_target,
    consistency_weights,
    dro_terms,
    item_propensity,
    median_tau,
    position_weights,
    ranking_distillation_loss,
    weighted_row_mean,
)

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """One training or evaluation batch (tensors built once by `student.data`)."""

    history: Tensor  # [B, L] long
    lengths: Tensor  # [B] long
    target: Tensor  # [B] long
    negatives: Optional[Tensor] = None  # [B, n_neg] long, never history or target
    teacher_items: Optional[Tensor] = None  # [B, K] long, teacher's top-K (ascending distance)
    teacher_distances: Optional[Tensor] = None  # [B, K] float
    teacher_target_distance: Optional[Tensor] = None  # [B] float, NaN when unknown
    has_teacher: Optional[Tensor] = None  # [B] bool: rows with a teacher ranking

    def to(self, device: torch.device | str) -> "Batch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return Batch(**{k: (v.to(device, non_blocking=True) if isinstance(v, Tensor) else v) for k, v in moved.items()})


def gather_last(x: Tensor, lengths: Tensor) -> Tensor:
    """`x[b, lengths[b] - 1]` [B, D]; an empty history reads position 0 (zero input there)."""
    idx = (lengths - 1).clamp_min(0).view(-1, 1, 1).expand(-1, 1, x.shape[2])
    return x.gather(1, idx).squeeze(1)


def valid_mask(history: Tensor, lengths: Tensor) -> Tensor:
    """[B, L] bool: positions that hold a real item (`position < length`)."""
    return torch.arange(history.shape[1], device=history.device).unsqueeze(0) < lengths.unsqueeze(1)


class SequentialRecommender(nn.Module, abc.ABC):
    """Base of every student: item embeddings (with ED), full-catalogue scores, the losses.

    `loss(batch)` returns `{"loss", "bce", "dro", "kd"}` (zeros for terms that are off):
    `loss = bce + alpha * dro + lambda_d * kd` with `kd = L_rank (+ alpha * kd_dro)`.
    The [B, n_items] score matrix is computed once, and only when DRO, consistency or
    kd_dro needs it; target / negative / teacher scores always come from gathered rows.
    """

    def __init__(
        self,
        n_items: int,
        config: StudentConfig,
        teacher_embeddings: Optional[Tensor] = None,
        item_popularity: Optional[Tensor] = None,
    ):
        super().__init__()
        self.n_items, self.pad_id, self.config = n_items, n_items, config
        self.dim, self.max_len = config.arch.dim, config.arch.max_len
        ed = config.distill.embedding
        use_ed = config.distill.enabled and ed.enabled
        if use_ed and teacher_embeddings is None:
            raise ValueError("embedding distillation is on: pass teacher_embeddings or set distill.embedding.enabled=False")
        self.item_emb = ItemEmbedding(n_items, self.dim, teacher_embeddings if use_ed else None, ed)
        if item_popularity is None:
            if config.loss.dro_alpha > 0:
                log.warning("DRO without item_popularity: uniform propensity (pass train-target counts)")
            item_popularity = torch.zeros(n_items)
        pop = torch.as_tensor(item_popularity)
        if pop.shape != (n_items,):
            raise ValueError(f"item_popularity must be [n_items={n_items}], got {tuple(pop.shape)}")
        self.register_buffer("propensity", item_propensity(pop))
        # Confidence temperature: config.distill.tau, else this (set by the trainer from all
        # train distances via `set_confidence_tau`), else the median of the batch's distances.
        self.register_buffer("confidence_tau", torch.tensor(float("nan")))
        # Whether it is set, known on the host (decided at setup, not with a GPU sync per step)
        self.tau_fixed = False
        self.register_load_state_dict_post_hook(SequentialRecommender._note_fixed_tau)

    # ------------------------------------------------------------------ interface
    @abc.abstractmethod
    def encode(self, history: Tensor, lengths: Tensor) -> Tensor:
        """Sequence representation [B, dim]; lengths may be 0 (empty history)."""

    def embed_history(self, history: Tensor, lengths: Tensor) -> Tensor:
        """Input vectors [B, L, dim], zero at every position >= length (pads, junk, empty)."""
        e = self.item_emb(history)
        return e * valid_mask(history, lengths).unsqueeze(-1).to(e.dtype)

    def check_length(self, history: Tensor) -> None:
        if history.shape[1] > self.max_len:
            raise ValueError(f"history length {history.shape[1]} > arch.max_len={self.max_len}")

    def scores(self, history: Tensor, lengths: Tensor, item_weights: Optional[Tensor] = None) -> Tensor:
        """Score of every item [B, n_items] (dot product with the output item vectors).

        `item_weights` = `self.item_emb.output_weights()` computed once by the caller, to
        reuse it over many evaluation batches (matters with `tie_output`).
        """
        w = self.item_emb.output_weights() if item_weights is None else item_weights
        return self.encode(history, lengths) @ w.T

    def set_confidence_tau(self, tau: float) -> None:
        """Fix the confidence temperature (e.g. `losses.default_tau` over all train distances)."""
        self.confidence_tau.fill_(float(tau))
        self.tau_fixed = True

    def bake(self) -> "SequentialRecommender":
        """For serving: fold embedding distillation into one item table (`ItemEmbedding.bake`).
        Same scores, plain-student cost, no teacher table in the state dict; not for training."""
        self.item_emb.bake()
        return self

    def _note_fixed_tau(self, _incompatible_keys=None) -> None:
        """After `load_state_dict`: a checkpoint's temperature is used as it was in training."""
        self.tau_fixed = bool(torch.isfinite(self.confidence_tau))

    # ------------------------------------------------------------------ losses
    def _tau(self, distances: Tensor, has: Tensor) -> float | Tensor:
        """config.distill.tau, else the fixed train-wide temperature (a tensor: no GPU sync),
        else the median of the batch's distances (branchless, so the step still compiles)."""
        if self.config.distill.tau is not None:
            return float(self.config.distill.tau)
        if self.tau_fixed:
            return self.confidence_tau
        rows = has.reshape(-1, *([1] * (distances.dim() - 1)))
        return median_tau(torch.where(rows, distances, torch.full_like(distances, float("nan"))))

    def loss(self, batch: Batch) -> dict[str, Tensor]:
        cfg, dcfg = self.config, self.config.distill
        if batch.negatives is None:
            raise ValueError("loss() needs batch.negatives (sampled outside history and target)")
        user = self.encode(batch.history, batch.lengths)  # [B, dim]
        B, n_neg = batch.negatives.shape
        kd_on = dcfg.enabled and batch.teacher_items is not None and dcfg.lambda_d > 0
        alpha = cfg.loss.dro_alpha
        kd_dro_on = kd_on and dcfg.kd_dro and alpha > 0
        consistency_on = kd_on and dcfg.gamma_consistency > 0

        cols = [batch.target.unsqueeze(1), batch.negatives]
        if kd_on:
            if batch.teacher_items.shape[1] < dcfg.k:
                raise ValueError(f"teacher_items has {batch.teacher_items.shape[1]} columns < distill.k={dcfg.k}")
            teacher = batch.teacher_items[:, : dcfg.k]
            cols.append(teacher)
        ids = torch.cat(cols, dim=1)
        few = torch.bmm(self.item_emb.output_embed(ids), user.unsqueeze(2)).squeeze(2)  # [B, 1+n+K]
        pos, neg, tea = few[:, 0], few[:, 1 : 1 + n_neg], few[:, 1 + n_neg :]
        out = {"bce": bce_loss(pos, neg)}
        zero = out["bce"].new_zeros(())

        full = None
        if alpha > 0 or consistency_on or kd_dro_on:
            full = user @ self.item_emb.output_weights().T  # [B, n_items], once per step
        dro_cand = None
        if alpha > 0 or kd_dro_on:
            t_ids = torch.cat([batch.target.unsqueeze(1), teacher], 1) if kd_dro_on else batch.target.unsqueeze(1)
            t_scores = torch.cat([pos.unsqueeze(1), tea], 1) if kd_dro_on else pos.unsqueeze(1)
            terms = dro_terms(full, t_ids, self.propensity, cfg.loss.dro_beta, t_scores)
            out["dro"] = terms[:, 0].mean() if alpha > 0 else zero
            dro_cand = terms[:, 1:] if kd_dro_on else None
        else:
            out["dro"] = zero

        if kd_on:
            has = batch.has_teacher if batch.has_teacher is not None else torch.ones(B, dtype=torch.bool, device=ids.device)
            w = self._kd_weights(batch, teacher, full, has)
            kd = ranking_distillation_loss(tea, w, has)
            if dro_cand is not None:
                kd = kd + alpha * weighted_row_mean(dro_cand, w, has)
            out["kd"] = kd
        else:
            out["kd"] = zero
        out["loss"] = out["bce"] + alpha * out["dro"] + dcfg.lambda_d * out["kd"]
        return {k: out[k] for k in ("loss", "bce", "dro", "kd")}

    def _kd_weights(self, batch: Batch, teacher: Tensor, full: Optional[Tensor], has: Tensor) -> Tensor:
        """Combined DLLM2Rec importance weights [B, K] (METHOD §4.1)."""
        dcfg = self.config.distill
        K = teacher.shape[1]
        wp = position_weights(K, dcfg.beta_position, device=teacher.device)
        if dcfg.confidence == "target":
            if batch.teacher_target_distance is None:
                raise ValueError("confidence='target' needs batch.teacher_target_distance (NaN where unknown)")
            d = batch.teacher_target_distance
            wc = confidence_weights_target(d, self._tau(d, has))
        else:
            if batch.teacher_distances is None:
                raise ValueError("confidence='candidate' needs batch.teacher_distances")
            d = batch.teacher_distances[:, :K]
            wc = confidence_weights_candidate(d, self._tau(d, has))
        if full is not None and dcfg.gamma_consistency > 0:
            history = batch.history.masked_fill(~valid_mask(batch.history, batch.lengths), self.pad_id)
            wo = consistency_weights(teacher, full, history, K)
        else:
            wo = torch.zeros_like(teacher, dtype=wp.dtype)
        return combine_weights(wp, wc, wo, (dcfg.gamma_position, dcfg.gamma_confidence, dcfg.gamma_consistency))
