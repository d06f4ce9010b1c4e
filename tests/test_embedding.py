"""Collaborative embedding distillation (METHOD §4.2): e_i = b_i + w_ed * g(z_i)."""
from __future__ import annotations

import pytest
import torch

from student.config import EmbeddingDistillConfig
from student.embedding import ItemEmbedding, standardise

torch.set_num_threads(1)

# 4 items, teacher width d = 2. Columns have mean 0 and every entry is +-1 (RMS 1), so the
# standardisation is the identity and every number below is exact in bfloat16.
Z = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
B = torch.tensor([[0.5, 0.0], [0.0, 0.5], [1.0, 1.0], [0.0, 0.0]])


def hand_module(tie: bool = False) -> ItemEmbedding:
    emb = ItemEmbedding(4, 2, Z, EmbeddingDistillConfig(weight=0.5, tie_output=tie))
    with torch.no_grad():
        emb.ids.weight[:4] = B
        emb.first.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))  # g(z) = [z1 + 0.5, 2 z2]
        emb.first.bias.copy_(torch.tensor([0.5, 0.0]))
    return emb


# e_i = b_i + 0.5 * g(z_i):
# e_0 = [0.5, 0]   + 0.5 * [1.5, 2]   = [1.25, 1.0]
# e_1 = [0, 0.5]   + 0.5 * [-0.5, -2] = [-0.25, -0.5]
# e_2 = [1, 1]     + 0.5 * [1.5, -2]  = [1.75, 0.0]
# e_3 = [0, 0]     + 0.5 * [-0.5, 2]  = [-0.25, 1.0]
E = torch.tensor([[1.25, 1.0], [-0.25, -0.5], [1.75, 0.0], [-0.25, 1.0]])


def test_standardise_is_identity_on_the_hand_table_and_affine_invariant():
    assert torch.equal(standardise(Z), Z)
    assert torch.allclose(standardise(3 * Z + 5), Z)
    assert torch.equal(standardise(torch.ones(3, 4)), torch.zeros(3, 4))


@pytest.mark.parametrize("bf16", [True, False])
def test_forward_hand_case_and_padding(bf16, monkeypatch):
    monkeypatch.setattr("student.embedding.CPU_BF16", bf16)  # both projection paths
    emb = hand_module()
    got = emb(torch.tensor([[0, 3, 4], [2, 1, 4]]))  # 4 = pad id
    assert torch.equal(got[0], torch.tensor([[1.25, 1.0], [-0.25, 1.0], [0.0, 0.0]]))
    assert torch.equal(got[1], torch.tensor([[1.75, 0.0], [-0.25, -0.5], [0.0, 0.0]]))


def test_output_uses_b_unless_tied():
    emb = hand_module(tie=False)
    assert torch.equal(emb.output_weights(), B)
    assert torch.equal(emb.output_embed(torch.tensor([[2, 0]])), B[[2, 0]].unsqueeze(0))
    tied = hand_module(tie=True)
    assert torch.equal(tied.output_weights(), E)
    assert torch.equal(tied.output_embed(torch.tensor([[2, 0]])), E[[2, 0]].unsqueeze(0))


def test_gradients_reach_b_and_projector_not_teacher():
    emb = hand_module()
    emb(torch.tensor([[0, 3, 4]])).sum().backward()
    assert emb.ids.weight.grad[[0, 3]].abs().sum() > 0
    assert emb.ids.weight.grad[[1, 2, 4]].abs().sum() == 0  # unused items and the pad get nothing
    assert emb.first.weight.grad.abs().sum() > 0
    assert "teacher" in dict(emb.named_buffers()) and all("teacher" not in n for n, _ in emb.named_parameters())


@pytest.mark.parametrize("d", [3, 37])
@pytest.mark.parametrize("projector", ["linear", "mlp"])
def test_any_teacher_width_and_projector(d, projector):
    torch.manual_seed(0)
    emb = ItemEmbedding(10, 8, torch.randn(10, d) * 50 + 7, EmbeddingDistillConfig(projector=projector))
    assert emb.teacher_dim == d and emb.teacher.dtype == torch.bfloat16 and emb.teacher.shape == (11, d)
    out = emb(torch.tensor([[1, 2, 2, 10]]))
    assert out.shape == (1, 4, 8) and torch.isfinite(out).all()
    assert torch.equal(out[0, 1], out[0, 2]) and torch.equal(out[0, 3], torch.zeros(8))


def test_disabled_or_absent_teacher_is_plain_id_embedding():
    for emb in (ItemEmbedding(4, 2, None), ItemEmbedding(4, 2, Z, EmbeddingDistillConfig(enabled=False))):
        assert not emb.use_teacher and emb.teacher_dim is None
        with torch.no_grad():
            emb.ids.weight[:4] = B
        assert torch.equal(emb(torch.tensor([[1, 4]])), torch.tensor([[[0.0, 0.5], [0.0, 0.0]]]))


def test_bad_teacher_tables_raise():
    with pytest.raises(ValueError, match="n_items"):
        ItemEmbedding(5, 2, Z)
    bad = Z.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ItemEmbedding(4, 2, bad)
