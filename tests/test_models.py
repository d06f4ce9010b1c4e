"""Students (GRU4Rec, Caser, SASRec): shapes, padding invariance, empty histories, losses."""
from __future__ import annotations

import pytest
import torch

from student.config import DistillConfig, EmbeddingDistillConfig, LossConfig, ModelConfig, StudentConfig
from student.losses import (
    bce_loss,
    combine_weights,
    confidence_weights_candidate,
    confidence_weights_target,
    consistency_weights,
    dro_terms,
    position_weights,
    ranking_distillation_loss,
    weighted_row_mean,
)
from student.models import MODELS, Batch, build_model, model_from_state_dict

torch.set_num_threads(1)
N_ITEMS, DIM, L, K, D_TEACHER = 40, 16, 6, 4, 24
PAD = N_ITEMS
NAMES = sorted(MODELS)


def config(name: str, distill: bool = False, dropout: float = 0.1, **kw) -> StudentConfig:
    d = DistillConfig(enabled=distill, k=K, **kw.pop("distill_kw", {}))
    return StudentConfig(
        model=name,
        arch=ModelConfig(dim=DIM, dropout=dropout, max_len=8, caser_filters=3, sasrec_heads=2),
        loss=LossConfig(negatives=2, dro_alpha=kw.pop("alpha", 0.0)),
        distill=d,
    )


def make(name: str, distill: bool = False, seed: int = 0, **kw):
    torch.manual_seed(seed)
    teacher = torch.randn(N_ITEMS, D_TEACHER) if distill else None
    return build_model(config(name, distill, **kw), N_ITEMS, teacher, torch.randint(0, 9, (N_ITEMS,)))


def histories():
    """Lengths 3, 1, 0 (empty) and 6, padded at the end to L."""
    lengths = torch.tensor([3, 1, 0, 6])
    h = torch.full((4, L), PAD)
    h[0, :3] = torch.tensor([1, 2, 3])
    h[1, :1] = torch.tensor([7])
    h[3] = torch.tensor([5, 9, 11, 13, 2, 4])
    return h, lengths


def batch(teacher: bool = False, has=None) -> Batch:
    torch.manual_seed(1)
    h, lengths = histories()
    b = Batch(h, lengths, target=torch.tensor([4, 8, 0, 20]), negatives=torch.tensor([[30, 31], [32, 33], [34, 35], [36, 37]]))
    if teacher:
        b.teacher_items = torch.stack([torch.randperm(N_ITEMS)[:6] for _ in range(4)])
        b.teacher_distances = torch.rand(4, 6).sort(dim=1).values * 10
        b.teacher_target_distance = torch.tensor([1.0, float("nan"), 3.0, 2.0])
        b.has_teacher = torch.tensor(has if has is not None else [True, True, False, True])
    return b


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("distill", [False, True])
def test_shapes_and_empty_history(name, distill):
    model = make(name, distill).eval()
    h, lengths = histories()
    with torch.no_grad():
        s = model.scores(h, lengths)
        u = model.encode(h, lengths)
    assert s.shape == (4, N_ITEMS) and u.shape == (4, DIM)
    assert torch.isfinite(s).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("distill", [False, True])
def test_padding_invariance(name, distill):
    model = make(name, distill).eval()
    h, lengths = histories()
    with torch.no_grad():
        ref = model.scores(h, lengths)
        longer = torch.cat([h, torch.full((4, 2), PAD)], dim=1)  # more padding appended
        assert torch.allclose(model.scores(longer, lengths), ref, atol=1e-5)
        shorter = h[:, :3].clone()  # rows that fit keep their scores with less padding
        assert torch.allclose(model.scores(shorter[:3], lengths[:3]), ref[:3], atol=1e-5)
        model.item_emb.ids.weight[PAD] = torch.randn(DIM) * 5  # the pad vector is never read
        assert torch.allclose(model.scores(h, lengths), ref, atol=1e-5)
        junk = h.clone()  # items beyond `lengths` are ignored, whatever they are
        junk[junk == PAD] = 17
        assert torch.allclose(model.scores(junk, lengths), ref, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_history_order_matters(name):
    model = make(name).eval()
    h, lengths = histories()
    flipped = h.clone()
    flipped[3] = h[3].flip(0)
    with torch.no_grad():
        assert not torch.allclose(model.scores(flipped, lengths)[3], model.scores(h, lengths)[3])


@pytest.mark.parametrize("name", ["sasrec", "caser"])
def test_too_long_history_raises(name):
    model = make(name).eval()
    with pytest.raises(ValueError, match="max_len"):
        model.scores(torch.full((1, 9), PAD), torch.tensor([0]))


def test_caser_history_shorter_than_filters():
    model = make("caser").eval()
    with torch.no_grad():
        s = model.scores(torch.tensor([[3, PAD]]), torch.tensor([1]))
    assert s.shape == (1, N_ITEMS) and torch.isfinite(s).all()


def expected_loss(model, b: Batch, cfg: StudentConfig) -> dict:
    """The total loss recomputed from model.scores() and the loss functions (the spec)."""
    s = model.scores(b.history, b.lengths)
    out = {"bce": bce_loss(s.gather(1, b.target[:, None])[:, 0], s.gather(1, b.negatives))}
    alpha, dc = cfg.loss.dro_alpha, cfg.distill
    out["dro"] = dro_terms(s, b.target[:, None], model.propensity, cfg.loss.dro_beta)[:, 0].mean() if alpha else s.new_zeros(())
    out["kd"] = s.new_zeros(())
    if dc.enabled and b.teacher_items is not None:
        t = b.teacher_items[:, :K]
        tau = 1.5
        wc = (
            confidence_weights_target(b.teacher_target_distance, tau)
            if dc.confidence == "target"
            else confidence_weights_candidate(b.teacher_distances[:, :K], tau)
        )
        wo = consistency_weights(t, s, b.history, K)
        w = combine_weights(position_weights(K, dc.beta_position), wc, wo, (dc.gamma_position, dc.gamma_confidence, dc.gamma_consistency))
        out["kd"] = ranking_distillation_loss(s.gather(1, t), w, b.has_teacher)
        if dc.kd_dro and alpha:
            out["kd"] = out["kd"] + alpha * weighted_row_mean(dro_terms(s, t, model.propensity, cfg.loss.dro_beta), w, b.has_teacher)
    out["loss"] = out["bce"] + alpha * out["dro"] + dc.lambda_d * out["kd"]
    return out


CASES = {
    "plain": dict(),
    "dro": dict(alpha=0.5),
    "kd_target": dict(distill=True, distill_kw=dict(tau=1.5)),
    "kd_candidate_dro": dict(distill=True, alpha=0.5, distill_kw=dict(tau=1.5, confidence="candidate")),
    "kd_dro_tied": dict(distill=True, alpha=0.5, distill_kw=dict(tau=1.5, kd_dro=True, embedding=EmbeddingDistillConfig(tie_output=True))),
    "kd_no_consistency": dict(distill=True, distill_kw=dict(tau=1.5, gamma_consistency=0.0)),
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_loss_matches_spec_and_backprops(name, case):
    kw = dict(CASES[case])
    distill = kw.pop("distill", False)
    model = make(name, distill, dropout=0.0, **kw)
    b = batch(teacher=distill)
    out = model.loss(b)
    assert set(out) == {"loss", "bce", "dro", "kd"}
    expect = expected_loss(model, b, model.config)
    for key in out:
        assert torch.allclose(out[key], expect[key], atol=1e-5), (key, out[key], expect[key])
    assert (out["dro"] != 0) == (model.config.loss.dro_alpha > 0)
    assert (out["kd"] != 0) == distill
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads if g is not None)
    assert model.item_emb.ids.weight.grad.abs().sum() > 0


def test_kd_ignored_when_distill_off_or_no_teacher_rows():
    model = make("sasrec", distill=True, dropout=0.0, distill_kw=dict(tau=1.5))
    out = model.loss(batch(teacher=True, has=[False] * 4))
    assert out["kd"].item() == 0.0
    out["loss"].backward()  # still a graph
    off = make("sasrec", distill=False, dropout=0.0)
    assert off.loss(batch(teacher=True))["kd"].item() == 0.0


def test_tau_fallbacks():
    model = make("gru4rec", distill=True, dropout=0.0)  # config tau None
    b = batch(teacher=True)
    # no tau set: median of the batch's finite target distances over teacher rows (1, 2) = 1.5
    assert torch.allclose(model.loss(b)["loss"], expected_loss(model, b, model.config)["loss"], atol=1e-5)
    model.set_confidence_tau(4.0)
    assert model._tau(b.teacher_target_distance, b.has_teacher) == 4.0
    assert model.state_dict()["confidence_tau"].item() == 4.0


def test_missing_inputs_raise():
    model = make("gru4rec", distill=True)
    b = batch(teacher=True)
    b.teacher_target_distance = None
    with pytest.raises(ValueError, match="teacher_target_distance"):
        model.loss(b)
    with pytest.raises(ValueError, match="negatives"):
        model.loss(Batch(b.history, b.lengths, b.target))
    with pytest.raises(ValueError, match="teacher_embeddings"):
        build_model(config("gru4rec", distill=True), N_ITEMS)
    with pytest.raises(ValueError, match="unknown model"):
        build_model(config("gru4rec").model_copy(update={"model": "bert4rec"}), N_ITEMS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("distill", [False, True])
def test_one_adam_step_reduces_the_loss(name, distill):
    kw = dict(alpha=0.5, distill_kw=dict(tau=1.5)) if distill else {}
    model = make(name, distill, dropout=0.0, **kw)
    b = batch(teacher=distill)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = model.loss(b)["loss"]
    before.backward()
    opt.step()
    with torch.no_grad():
        after = model.loss(b)["loss"]
    assert after < before


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip_without_teacher_artifacts(name):
    model = make(name, distill=True).eval()
    model.set_confidence_tau(2.5)
    again = model_from_state_dict(model.config, N_ITEMS, model.state_dict()).eval()
    h, lengths = histories()
    with torch.no_grad():
        assert torch.equal(again.scores(h, lengths), model.scores(h, lengths))
    assert again.confidence_tau.item() == 2.5 and again.tau_fixed  # loaded, so the loss uses it
    assert not make(name, distill=True).tau_fixed


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("projector,tie", [("linear", False), ("mlp", True)])
def test_bake_folds_embedding_distillation_for_serving(name, projector, tie, monkeypatch):
    monkeypatch.setattr("student.embedding.BAKE_ROWS", 7)  # the catalogue is projected in chunks (40 = 5 x 7 + 5)
    emb = EmbeddingDistillConfig(projector=projector, tie_output=tie)
    model = make(name, distill=True, distill_kw={"embedding": emb}).eval()
    h, lengths = histories()
    with torch.no_grad():
        trained = model.scores(h, lengths)
        baked = model_from_state_dict(model.config, N_ITEMS, model.state_dict()).bake().eval()
        assert torch.allclose(baked.scores(h, lengths), trained, atol=1e-5)
    state = baked.state_dict()
    # the serving state: one [n_items + 1, dim] input table instead of the teacher table and g
    assert "item_emb.teacher" not in state and not any(k.startswith(("item_emb.first", "item_emb.rest")) for k in state)
    assert state["item_emb.input_table"].shape == (N_ITEMS + 1, DIM) and baked.item_emb.teacher_dim is None
    again = model_from_state_dict(model.config, N_ITEMS, state).eval()  # a baked state comes back baked
    with torch.no_grad():
        assert again.item_emb.baked and torch.equal(again.scores(h, lengths), baked.scores(h, lengths))


def test_bake_without_embedding_distillation_changes_nothing():
    model = make("sasrec", distill=False)
    before = dict(model.state_dict())
    assert model.bake() is model and not model.item_emb.baked and model.state_dict().keys() == before.keys()


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", NAMES)
def test_loss_under_autocast(name, device):
    # AMP: half-precision scores must still give a finite float32 loss and finite gradients
    dtype = torch.float16 if device == "cuda" else torch.bfloat16
    model = make(name, distill=True, dropout=0.0, alpha=0.5, distill_kw=dict(tau=1.5, kd_dro=True)).to(device)
    b = batch(teacher=True).to(device)
    with torch.autocast(device_type=device, dtype=dtype):
        out = model.loss(b)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in out.values())
    ref = model.loss(b)["loss"]
    assert torch.allclose(out["loss"], ref, rtol=0.05)
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
