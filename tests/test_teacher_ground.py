"""Grounding against brute force, history exclusion, identical titles, retrieve and hybrid modes."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.metrics import metrics_from_ranks
from teacher.ground import L2Scorer, chunked_topn, teacher_ranks, title_groups
from teacher.modes import HybridScorer, PopularityScorer, retrieve_queries, select_on_valid

torch.set_num_threads(1)


def data(n_q=13, n_i=57, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_q, d)).astype(np.float32), rng.standard_normal((n_i, d)).astype(np.float32)


@pytest.mark.parametrize("query_chunk,item_chunk", [(1, 1000), (4, 7), (13, 57), (5, 10)])
def test_chunked_topn_equals_brute_force_cdist(query_chunk, item_chunk):
    q, items = data()
    idx, dist = chunked_topn(L2Scorer(q, items), len(q), len(items), 12, query_chunk=query_chunk, item_chunk=item_chunk)
    full = torch.cdist(torch.from_numpy(q), torch.from_numpy(items))
    ref = torch.argsort(full, dim=1, stable=True)[:, :12].numpy()
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(dist, np.take_along_axis(full.numpy(), ref, 1), rtol=1e-5, atol=1e-5)
    assert idx.dtype == np.int32 and dist.dtype == np.float32


def test_history_items_are_never_ranked_and_the_rest_is_brute_force():
    q, items = data()
    histories = [list(range(r, r + 5)) for r in range(len(q))]
    histories[0] = []
    idx, dist = chunked_topn(L2Scorer(q, items), len(q), len(items), 10, histories, query_chunk=4, item_chunk=9)
    full = torch.cdist(torch.from_numpy(q), torch.from_numpy(items)).numpy()
    for r, hist in enumerate(histories):
        assert not set(hist) & set(idx[r].tolist())
        d = full[r].copy()
        d[hist] = np.inf
        np.testing.assert_array_equal(idx[r], np.argsort(d, kind="stable")[:10])


def test_too_small_catalogue_is_an_error():
    q, items = data(n_i=12)
    with pytest.raises(ValueError, match="exceed the catalogue"):
        chunked_topn(L2Scorer(q, items), len(q), 12, 10, [[0, 1, 2]] * len(q))


def test_ties_break_by_item_id():
    items = np.array([[1.0, 0], [0, 0], [1.0, 0], [0, 0], [2.0, 0]] * 3, dtype=np.float32)
    q = np.zeros((1, 2), dtype=np.float32)
    idx, dist = chunked_topn(L2Scorer(q, items), 1, len(items), 10, item_chunk=4)
    assert idx[0].tolist() == [1, 3, 6, 8, 11, 13, 0, 2, 5, 7]
    assert dist[0].tolist() == [0] * 6 + [1] * 4


def test_target_distance():
    q, items = data()
    targets = np.arange(len(q)) * 3
    full = torch.cdist(torch.from_numpy(q), torch.from_numpy(items)).numpy()
    np.testing.assert_allclose(L2Scorer(q, items).at(np.arange(len(q)), targets), full[np.arange(len(q)), targets], rtol=1e-5)


def test_identical_titles_get_the_best_rank_of_their_title():
    groups = title_groups(["A", "B", "A", "C", "B"])
    assert groups.tolist() == [0, 1, 0, 3, 1]
    topk = np.array([[2, 1, 3], [3, 1, 4], [3, 1, 0]])
    # target 0 shares its title with item 2 (ranked first); target 4 with item 1 (ranked 2nd)
    ranks = teacher_ranks(topk, np.array([0, 4, 3]), groups)
    assert ranks.tolist() == [1, 2, 1]
    assert teacher_ranks(topk, np.array([0, 4, 3])).tolist() == [0, 3, 1]  # without groups: exact ids
    m = metrics_from_ranks(ranks, ks=(1,))
    assert m["HR@1"] == pytest.approx(2 / 3)


def test_retrieve_queries_recency_weighted():
    emb = np.array([[1.0, 0], [0, 1.0], [2.0, 2.0]], dtype=np.float32)
    q = retrieve_queries(emb, [[0, 1, 2], [1], []], last=2, decay=0.5)
    # last two of [0,1,2]: items 1 (age 1, weight .5) and 2 (age 0, weight 1)
    np.testing.assert_allclose(q[0], (0.5 * emb[1] + emb[2]) / 1.5)
    np.testing.assert_allclose(q[1], emb[1])
    np.testing.assert_allclose(q[2], emb.mean(0))
    np.testing.assert_allclose(retrieve_queries(emb, [[0, 1, 2]], last=1)[0], emb[2])


def test_hybrid_scores_by_hand():
    gen_q, items = data(n_q=4, n_i=30)
    ret_q, _ = data(n_q=4, n_i=30, seed=1)
    w = 0.3
    s = HybridScorer(gen_q, ret_q, items, w, query_chunk=3, item_chunk=7)
    dg = torch.cdist(torch.from_numpy(gen_q), torch.from_numpy(items))
    dr = torch.cdist(torch.from_numpy(ret_q), torch.from_numpy(items))
    expected = w * dg / dg.std(1, unbiased=False, keepdim=True) + (1 - w) * dr / dr.std(1, unbiased=False, keepdim=True)
    torch.testing.assert_close(s(0, 4, 0, 30), expected, rtol=1e-4, atol=1e-4)
    # standardising with the mean as well ranks identically (a per-row constant)
    z = w * (dg - dg.mean(1, keepdim=True)) / dg.std(1, unbiased=False, keepdim=True) \
        + (1 - w) * (dr - dr.mean(1, keepdim=True)) / dr.std(1, unbiased=False, keepdim=True)
    idx, _ = chunked_topn(s, 4, 30, 10, item_chunk=8)
    np.testing.assert_array_equal(idx, torch.argsort(z, dim=1, stable=True)[:, :10].numpy())
    targets = np.array([1, 2, 3, 4])
    np.testing.assert_allclose(s.at(np.arange(4), targets), expected.numpy()[np.arange(4), targets], rtol=1e-4)


def test_hybrid_extremes_equal_single_modes():
    gen_q, items = data()
    ret_q, _ = data(seed=5)
    for w, q in ((1.0, gen_q), (0.0, ret_q)):
        a, _ = chunked_topn(HybridScorer(gen_q, ret_q, items, w), len(q), len(items), 10)
        b, _ = chunked_topn(L2Scorer(q, items), len(q), len(items), 10)
        np.testing.assert_array_equal(a, b)


def test_select_on_valid_picks_the_better_query():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((40, 5)).astype(np.float32)
    targets = rng.integers(0, 40, size=20)
    good = items[targets] + 0.01 * rng.standard_normal((20, 5)).astype(np.float32)  # next to the target
    bad = rng.standard_normal((20, 5)).astype(np.float32)
    grid = [{"weight": w} for w in (0.0, 0.5, 1.0)]
    point, scores = select_on_valid(lambda p: HybridScorer(good, bad, items, p["weight"]), grid, 40, None, targets,
                                    None, "HR@1", top_n=10)
    assert point == {"weight": 1.0} and scores["weight=1"] == 1.0 and scores["weight=0"] < 1.0
    point, _ = select_on_valid(lambda p: HybridScorer(bad, good, items, p["weight"]), grid, 40, None, targets,
                               None, "HR@1", top_n=10)
    assert point == {"weight": 0.0}


def test_popularity_scores_by_hand():
    # two queries on a line of 4 items; counts 0, 10, 0, 20 -> normalised popularity 0, .5, 0, 1
    items = np.array([[0.0], [1.0], [2.0], [4.0]], dtype=np.float32)
    queries = np.array([[0.0], [4.0]], dtype=np.float32)
    s = PopularityScorer(L2Scorer(queries, items), np.array([0, 10, 0, 20]), gamma=1.0, n_queries=2, n_items=4,
                         query_chunk=1, item_chunk=3)
    # query 0: distances 0,1,2,4 -> min-max 0,.25,.5,1 -> / (1, 1.5, 1, 2)
    # query 1: distances 4,3,2,0 -> 1,.75,.5,0          -> / (1, 1.5, 1, 2)
    expected = np.array([[0, 0.25 / 1.5, 0.5, 0.5], [1, 0.5, 0.5, 0]], dtype=np.float32)
    np.testing.assert_allclose(s(0, 2, 0, 4).numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(s.at(np.array([0, 1]), np.array([1, 2])), [0.25 / 1.5, 0.5], atol=1e-6)
    idx, dist = chunked_topn(s, 2, 4, 2, item_chunk=3)
    assert idx.tolist() == [[0, 1], [3, 1]]  # ties (0.5) break by item id
    np.testing.assert_allclose(dist, [[0, 0.25 / 1.5], [0, 0.5]], atol=1e-6)


def test_popularity_gamma_zero_keeps_the_l2_ranking_and_large_gamma_ranks_by_popularity():
    q, items = data(n_q=6, n_i=50)
    counts = np.random.default_rng(3).integers(0, 1000, size=50)
    plain, _ = chunked_topn(L2Scorer(q, items), 6, 50, 10)
    zero, _ = chunked_topn(PopularityScorer(L2Scorer(q, items), counts, 0.0, 6, 50), 6, 50, 10)
    np.testing.assert_array_equal(plain, zero)
    huge, _ = chunked_topn(PopularityScorer(L2Scorer(q, items), counts, 50.0, 6, 50), 6, 50, 3)
    # the nearest item keeps normalised distance 0 and stays first; the rest follow popularity
    assert huge[0, 0] == plain[0, 0]
    assert set(huge[0, 1:]) == set([i for i in np.argsort(-counts) if i != plain[0, 0]][:2])
    with pytest.raises(ValueError, match="one count per item"):
        PopularityScorer(L2Scorer(q, items), counts[:10], 1.0, 6, 50)
