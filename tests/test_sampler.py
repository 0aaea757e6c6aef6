"""TaskBatchSampler: shapes, disjointness, windows, negatives, determinism, resume, errors."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from omrl_data.batch import TaskBatch
from omrl_data.dataset import MultiTaskDataset, load
from omrl_data.errors import BadInput
from omrl_data.sampler import TaskBatchSampler
from tests.synthetic import synthetic_task_arrays, synthetic_tasks

OBS, ACT = 5, 3


def tagged_dataset(rows=(300, 350, 400, 450, 500, 550), horizon=20, n_test=2, seed=0) -> MultiTaskDataset:
    """Synthetic tasks whose rows say who they are: ``observations[:, 0]`` is the global row,
    ``observations[:, 1]`` the task, ``actions[:, 0]`` the episode, ``actions[:, 1]`` the step."""
    tasks = synthetic_tasks("ant_dir", len(rows), seed=seed, n_test=n_test)
    per_task, start = [], 0
    for i, n in enumerate(rows):
        a = synthetic_task_arrays(n, OBS, ACT, horizon=horizon, task_index=i, seed=seed)
        a["observations"] = a["observations"].copy()
        a["actions"] = a["actions"].copy()
        a["observations"][:, 0] = np.arange(start, start + n)
        a["observations"][:, 1] = i
        a["actions"][:, 0] = a["episode_index"]
        a["actions"][:, 1] = a["step_in_episode"]
        per_task.append(a)
        start += n
    return MultiTaskDataset.from_arrays(tasks, per_task, {"gamma": 0.99})


def even_episodes(n_rows: int = 40, length: int = 10) -> MultiTaskDataset:
    """One task whose episodes all have ``length`` rows."""
    base = tagged_dataset(rows=(n_rows,), n_test=0)
    fields = dict(base.fields, episode_index=np.arange(n_rows, dtype=np.int64) // length)
    return MultiTaskDataset(base.tasks, fields, base.offsets, base.metadata)


@pytest.fixture(scope="module")
def ds() -> MultiTaskDataset:
    return tagged_dataset()


def row_ids(batch: TaskBatch) -> np.ndarray:
    return batch.observations[..., 0].long().cpu().numpy()


def check_batch(batch: TaskBatch, t: int, b: int, n_features: int = 2) -> None:
    expect = {
        "observations": ((t, b, OBS), torch.float32),
        "actions": ((t, b, ACT), torch.float32),
        "rewards": ((t, b), torch.float32),
        "next_observations": ((t, b, OBS), torch.float32),
        "terminated": ((t, b), torch.bool),
        "truncated": ((t, b), torch.bool),
        "mc_returns": ((t, b), torch.float32),
        "task_index": ((t,), torch.int64),
        "task_features": ((t, n_features), torch.float32),
        "mask": ((t, b), torch.bool),
    }
    for name, (shape, dtype) in expect.items():
        value = getattr(batch, name)
        assert tuple(value.shape) == shape, (name, value.shape)
        assert value.dtype == dtype, (name, value.dtype)


def assert_rows_belong(ds: MultiTaskDataset, batch: TaskBatch, tasks: np.ndarray | None = None) -> None:
    """Every real row is the dataset row it claims, from the task it claims."""
    ids = row_ids(batch)
    tasks = batch.task_index.cpu().numpy()[:, None].repeat(ids.shape[1], 1) if tasks is None else tasks
    mask = batch.mask.cpu().numpy()
    assert np.all(ds.offsets[tasks][mask] <= ids[mask]) and np.all(ids[mask] < ds.offsets[tasks + 1][mask])
    for name in ("rewards", "mc_returns", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(batch, name).cpu().numpy()[mask], ds.fields[name][ids[mask]])
    np.testing.assert_array_equal(batch.next_observations.cpu().numpy()[mask], ds.fields["next_observations"][ids[mask]])
    np.testing.assert_array_equal(batch.task_features.cpu().numpy(), ds.tasks.features[batch.task_index.cpu().numpy()])


# ---------------------------------------------------------------------------------------- sample
def test_sample_shapes_tasks_and_rows(ds):
    s = TaskBatchSampler(ds, "train", meta_batch=3, batch_size=64, seed=0)
    seen = set()
    for _ in range(20):
        b = s.sample()
        check_batch(b, 3, 64)
        tasks = b.task_index.tolist()
        assert len(set(tasks)) == 3 and set(tasks) <= {0, 1, 2, 3}
        assert b.row_task_index is None and bool(b.mask.all())
        assert_rows_belong(ds, b)
        seen |= set(tasks)
    assert seen == {0, 1, 2, 3}
    everyone = TaskBatchSampler(ds, "all", batch_size=8).sample()
    assert everyone.task_index.tolist() == list(range(6))
    assert TaskBatchSampler(ds, [5, 1], batch_size=4).sample(batch_size=7, tasks=[4]).observations.shape == (1, 7, OBS)


def test_sample_rows_uniform_within_task():
    ds = tagged_dataset(rows=(40,), n_test=0)
    s = TaskBatchSampler(ds, "all", batch_size=4000, seed=3)
    counts = np.bincount(row_ids(s.sample()).ravel(), minlength=40)
    # 4000 draws over 40 rows: expected 100 each; chi-square with 39 dof, p ~ 1e-4 bound.
    chi2 = ((counts - 100.0) ** 2 / 100.0).sum()
    assert chi2 < 80, chi2


# --------------------------------------------------------------------------------- support/query
@pytest.mark.parametrize("contiguous", [False, True])
def test_support_query_disjoint(ds, contiguous):
    s = TaskBatchSampler(ds, "train", meta_batch=4, seed=1)
    for _ in range(10):
        sup, qry = s.sample_support_query(support=100, query=150, contiguous=contiguous)
        check_batch(sup, 4, 100)
        check_batch(qry, 4, 150)
        assert torch.equal(sup.task_index, qry.task_index)
        assert_rows_belong(ds, sup)
        assert_rows_belong(ds, qry)
        si, qi = row_ids(sup), row_ids(qry)
        for t in range(4):
            assert len(set(si[t])) == 100 and len(set(qi[t])) == 150
            assert not set(si[t]) & set(qi[t])
            if contiguous:
                np.testing.assert_array_equal(np.diff(si[t]), 1)


def test_support_query_takes_a_whole_small_task():
    ds = tagged_dataset(rows=(30, 30), n_test=0)
    sup, qry = TaskBatchSampler(ds, "all", seed=2).sample_support_query(support=10, query=20)
    for t in range(2):
        assert sorted(np.concatenate([row_ids(sup)[t], row_ids(qry)[t]]).tolist()) == list(range(30 * t, 30 * t + 30))


@pytest.mark.parametrize("k", [5, 12])  # 5 of 12 rows: redraw duplicates; 12 of 12: permutation
def test_distinct_rows_uniform_over_positions(k):
    ds = tagged_dataset(rows=(12,), n_test=0)
    s = TaskBatchSampler(ds, "all", seed=4)
    counts = np.zeros((k, 12))
    draws = 1200
    for _ in range(draws):
        sup, qry = s.sample_support_query(support=k - 2, query=2)
        ids = np.concatenate([row_ids(sup)[0], row_ids(qry)[0]])
        counts[np.arange(k), ids] += 1
    expected = draws / 12
    chi2 = ((counts - expected) ** 2 / expected).sum()
    # k * 11 degrees of freedom (55 or 132); these bounds sit near p = 1e-4.
    assert chi2 < {5: 100, 12: 200}[k], chi2


def test_contiguous_window_positions_cover_the_task():
    ds = tagged_dataset(rows=(50,), n_test=0)
    s = TaskBatchSampler(ds, "all", seed=5)
    firsts = {int(row_ids(s.sample_support_query(10, 5, contiguous=True)[0])[0, 0]) for _ in range(400)}
    assert firsts == set(range(41))  # every window start 0..40 occurs, none past the end


# ---------------------------------------------------------------------------------------- context
def test_context_windows_inside_one_episode(ds):
    s = TaskBatchSampler(ds, "train", meta_batch=4, seed=6)
    starts = set()
    for _ in range(30):
        b = s.sample_context(length=8)
        check_batch(b, 4, 8)
        assert bool(b.mask.all())
        assert_rows_belong(ds, b)
        ids = row_ids(b)
        np.testing.assert_array_equal(np.diff(ids, axis=1), 1)
        episode = ds.fields["episode_index"][ids]
        assert np.all(episode == episode[:, :1])
        np.testing.assert_array_equal(np.diff(ds.fields["step_in_episode"][ids], axis=1), 1)
        starts |= set(ds.fields["step_in_episode"][ids[:, 0]].tolist())
    assert starts == set(range(13))  # horizon 20, C 8: windows start at steps 0..12


def test_context_pads_tasks_without_a_long_enough_episode():
    ds = tagged_dataset(rows=(60, 200), horizon=6, n_test=0)
    b = TaskBatchSampler(ds, "all", seed=7).sample_context(length=10)
    check_batch(b, 2, 10)
    lengths = b.mask.sum(1)
    assert 1 <= int(lengths[0]) <= 6 and int(lengths[1]) <= 6
    real = b.mask.numpy()
    assert not real[:, 6:].any()
    # Padded rows are zeros; real rows are one episode from its first step.
    assert float(b.observations[~b.mask].abs().sum()) == 0.0
    assert not bool(b.terminated[~b.mask].any())
    for t in range(2):
        ids = row_ids(b)[t][real[t]]
        assert ds.fields["step_in_episode"][ids[0]] == 0 and np.all(np.diff(ids) == 1)


def test_context_whole_episodes(ds):
    s = TaskBatchSampler(ds, "train", meta_batch=4, seed=8)
    for _ in range(10):
        b = s.sample_context(whole_episodes=True)
        lengths = b.mask.sum(1).numpy()
        check_batch(b, 4, int(lengths.max()))
        assert_rows_belong(ds, b)
        for t in range(4):
            ids = row_ids(b)[t][: lengths[t]]
            assert not b.mask[t, lengths[t]:].any()
            episode = ds.fields["episode_index"][ids]
            assert np.all(episode == episode[0])
            task = int(b.task_index[t])
            lo, hi = ds.offsets[task], ds.offsets[task + 1]
            full = np.flatnonzero(ds.fields["episode_index"][lo:hi] == episode[0]) + lo
            np.testing.assert_array_equal(ids, full)  # the whole episode, in order
    fixed = s.sample_context(length=20, whole_episodes=True)
    check_batch(fixed, 4, 20)
    short = s.sample_context(length=5, whole_episodes=True)  # only episodes of at most 5 rows
    assert short.observations.shape[1] == 5 and bool((short.mask.sum(1) <= 5).all())


# -------------------------------------------------------------------------------------- negatives
def test_negative_probabilities_follow_the_kernel(ds):
    s = TaskBatchSampler(ds, "all", seed=9)
    feats = ds.tasks.features.astype(np.float64)
    for alpha in (0.0, 0.7, 5.0):
        probs = s.negative_probabilities([0, 3], alpha, relative=False).numpy()
        for row, i in zip(probs, (0, 3)):
            b = np.exp(-alpha * ((feats[i] - feats) ** 2).sum(1))
            b[i] = 0.0
            np.testing.assert_allclose(row, b / b.sum(), rtol=1e-9)
    np.testing.assert_allclose(s.negative_probabilities([2], 0.0).numpy()[0], [0.2, 0.2, 0, 0.2, 0.2, 0.2])


@pytest.mark.parametrize("alpha", [0.0, 2.0])
def test_negative_counts_follow_the_kernel(ds, alpha):
    s = TaskBatchSampler(ds, "all", seed=10)
    anchors = [0, 4]
    n_total = 6000
    b = s.sample_negatives(anchors, n_total=n_total, alpha=alpha, relative=False, counts="random")
    check_batch(b, 2, n_total)
    assert b.row_task_index.shape == (2, n_total) and b.row_task_index.dtype == torch.int64
    assert b.task_index.tolist() == anchors
    src = b.row_task_index.numpy()
    assert_rows_belong(ds, b, tasks=src)
    probs = s.negative_probabilities(anchors, alpha, relative=False).numpy()
    for a, i in enumerate(anchors):
        counts = np.bincount(src[a], minlength=6)
        assert counts[i] == 0
        expected = n_total * probs[a]
        ok = expected > 0
        chi2 = ((counts[ok] - expected[ok]) ** 2 / expected[ok]).sum()
        assert chi2 < 25, (alpha, counts, expected)  # 4 dof: p ~ 5e-5


def test_negative_kernel_prefers_near_tasks(ds):
    s = TaskBatchSampler(ds, "all", seed=11)
    src = s.sample_negatives([0], n_total=3000, alpha=20.0).row_task_index[0].numpy()
    counts = np.bincount(src, minlength=6)
    d2 = ((ds.tasks.features - ds.tasks.features[0]) ** 2).sum(1)
    nearest, farthest = np.argsort(d2)[1], np.argsort(d2)[-1]
    assert counts[nearest] > counts[farthest]


def _features_dataset(features: list[list[float]], rows: int = 120, horizon: int = 10) -> MultiTaskDataset:
    """tagged_dataset with hand-made task features."""
    base = tagged_dataset(rows=(rows,) * len(features), horizon=horizon, n_test=0)
    from dataclasses import replace as dc_replace

    tasks = dc_replace(base.tasks, features=np.asarray(features, dtype=np.float32))
    return MultiTaskDataset(tasks, base.fields, base.offsets, base.metadata)


def test_negative_counts_are_n_ij_for_hand_made_features():
    # 1-D features 0, 1, 2, 4; anchor 0: |p_0 - p_j|^2 = 1, 4, 16. Absolute alpha 0.5:
    # b = e^-0.5, e^-2, e^-8 -> shares 0.8171, 0.1823, 0.0006 of 20 -> 16.34, 3.65, 0.01
    # floors 16, 3, 0 (19), one more to the largest remainder (task 2: 0.65) -> 16, 4, 0.
    ds = _features_dataset([[0.0], [1.0], [2.0], [4.0]])
    s = TaskBatchSampler(ds, "all", seed=1)
    b = np.exp(-0.5 * np.array([1.0, 4.0, 16.0]))
    np.testing.assert_allclose(s.negative_probabilities([0], 0.5, relative=False).numpy()[0, 1:], b / b.sum(), rtol=1e-12)
    assert s.negative_counts([0], 20, 0.5, relative=False).tolist() == [[0, 16, 4, 0]]
    # anchor 2 (p = 2): distances 4, 1, 4 -> b = e^-2, e^-0.5, e^-2, shares 0.1543, 0.6914, 0.1543;
    # x 10 = 1.54, 6.91, 1.54 -> floors 1, 6, 1 (8); two more: task 1 (0.91), then the tie
    # 0.54 / 0.54 goes to the earlier task 0 -> 2, 7, 1.
    assert s.negative_counts([2], 10, 0.5, relative=False).tolist() == [[2, 7, 0, 1]]
    # uniform (alpha 0): 9 over 3 other tasks -> 3 each; 10 -> 4, 3, 3 (ties to the earlier task)
    assert s.negative_counts([1], 9, 0.0).tolist() == [[3, 0, 3, 3]]
    assert s.negative_counts([1], 10, 0.0).tolist() == [[4, 0, 3, 3]]
    batch = s.sample_negatives([0, 2], 20, 0.5, relative=False)
    src = batch.row_task_index.numpy()
    assert [np.bincount(r, minlength=4).tolist() for r in src] == [[0, 16, 4, 0], [3, 14, 0, 3]]
    assert_rows_belong(ds, batch, tasks=src)
    for seed in range(5):  # every anchor's counts sum to n_total, for any alpha
        counts = TaskBatchSampler(ds, "all", seed=seed).negative_counts([0, 1, 2, 3], 7 + seed, float(seed))
        assert counts.sum(1).tolist() == [7 + seed] * 4 and bool((counts[torch.arange(4), torch.arange(4)] == 0).all())


def test_relative_alpha_means_the_same_on_any_feature_scale():
    feats = [[0.0, 0.0], [1.0, 0.5], [2.0, 2.0], [3.5, 1.0], [0.5, 3.0]]
    small = TaskBatchSampler(_features_dataset([[0.3 * x for x in f] for f in feats]), "all")
    wide = TaskBatchSampler(_features_dataset([[3 * x for x in f] for f in feats]), "all")
    # the unit of a relative alpha is the mean squared distance between two distinct tasks
    d2 = [((np.array(a) - np.array(b)) ** 2).sum() for i, a in enumerate(feats) for j, b in enumerate(feats) if i != j]
    assert small.feature_scale() == pytest.approx(0.09 * np.mean(d2), rel=1e-6) and wide.feature_scale() == pytest.approx(9 * np.mean(d2), rel=1e-6)
    for alpha in (0.3, 1.0, 4.0):
        torch.testing.assert_close(small.negative_probabilities([0, 3], alpha), wide.negative_probabilities([0, 3], alpha))
        assert small.negative_counts([0, 3], 64, alpha).tolist() == wide.negative_counts([0, 3], 64, alpha).tolist()
    # absolute alpha: the wide features make the same alpha nearly one-hot
    assert float(wide.negative_probabilities([0], 1.0, relative=False).max()) > 0.999
    assert float(small.negative_probabilities([0], 1.0, relative=False).max()) < 0.9


def test_context_windows_per_task_never_cross_episodes_and_carry_masks():
    ds = tagged_dataset(rows=(300, 60, 400), horizon=7, n_test=0)  # task 1: episodes of 7 rows
    s = TaskBatchSampler(ds, "all", seed=3)
    b = s.sample_context(length=5, windows=6)
    assert b.observations.shape == (3, 6, 5, OBS) and b.mask.shape == (3, 6, 5) and b.rewards.shape == (3, 6, 5)
    assert b.task_features.shape == (3, 2) and b.batch_size == 6
    ids = b.observations[..., 0].long().numpy()
    for t in range(3):
        assert set(ds.fields["observations"][ids[t].ravel(), 1].astype(int)) == {int(b.task_index[t])}
        for w in range(6):
            ep = ds.fields["episode_index"][ids[t, w]]
            assert np.all(ep == ep[0]) and np.all(np.diff(ids[t, w]) == 1)
    assert bool(b.mask.all())
    # windows longer than every episode: one episode from its first row, padded, zeros under the mask
    long = s.sample_context(length=10, windows=4)
    lengths = long.mask.sum(-1)
    assert long.mask.shape == (3, 4, 10) and bool(((lengths >= 1) & (lengths <= 7)).all())
    assert bool((long.mask == (torch.arange(10) < lengths[..., None])).all())  # real rows first, then padding
    assert float(long.observations[~long.mask].abs().sum()) == 0.0
    # negatives as windows: [A, N, L], from the counted tasks, inside one episode of their source
    neg = s.sample_negatives([0], 8, 0.0, length=4)
    assert neg.observations.shape == (1, 8, 4, OBS) and neg.row_task_index.shape == (1, 8)
    nid = neg.observations[0, ..., 0].long().numpy()
    for w in range(8):
        assert set(ds.fields["observations"][nid[w], 1].astype(int)) == {int(neg.row_task_index[0, w])}
        ep = ds.fields["episode_index"][nid[w]]
        assert np.all(ep == ep[0]) and np.all(np.diff(nid[w]) == 1)
    assert sorted(neg.row_task_index[0].tolist()) == [1, 1, 1, 1, 2, 2, 2, 2]


# ------------------------------------------------------------------------------------- adaptation
def test_adaptation_batch_is_fixed_and_leaves_the_stream_alone(ds):
    s = TaskBatchSampler(ds, "train", meta_batch=2, batch_size=16, seed=12)
    ref = TaskBatchSampler(ds, "train", meta_batch=2, batch_size=16, seed=12)
    a1 = s.adaptation_batch(5, size=256)  # a test task, outside the train pool
    check_batch(a1, 1, 256)
    assert a1.task_index.tolist() == [5]
    assert len(set(row_ids(a1)[0])) == 256
    assert_rows_belong(ds, a1)
    torch.testing.assert_close(s.sample().observations, ref.sample().observations)
    a2 = s.adaptation_batch(5, size=256)
    assert np.array_equal(row_ids(a1), row_ids(a2))
    assert np.array_equal(row_ids(TaskBatchSampler(ds, "test", seed=12).adaptation_batch(5, 256)), row_ids(a1))
    assert not np.array_equal(row_ids(TaskBatchSampler(ds, "test", seed=13).adaptation_batch(5, 256)), row_ids(a1))
    window = row_ids(s.adaptation_batch(4, size=64, contiguous=True))[0]
    np.testing.assert_array_equal(np.diff(window), 1)
    # Further draws: fixed, distinct from draw 0 and from each other; draw 0 is the default batch.
    assert np.array_equal(row_ids(s.adaptation_batch(5, 256, draw=0)), row_ids(a1))
    d1, d2 = (row_ids(s.adaptation_batch(5, 256, draw=d)) for d in (1, 2))
    assert np.array_equal(d1, row_ids(s.adaptation_batch(5, 256, draw=1)))
    assert not np.array_equal(d1, row_ids(a1)) and not np.array_equal(d1, d2)
    w1 = row_ids(s.adaptation_batch(4, size=64, contiguous=True, draw=1))[0]
    assert w1[0] != window[0]
    with pytest.raises(BadInput, match="draw=-1"):
        s.adaptation_batch(5, 256, draw=-1)


# ------------------------------------------------------------------------ determinism and resume
def draw_all(s: TaskBatchSampler) -> list[torch.Tensor]:
    sup, qry = s.sample_support_query(32, 32)
    csup, cqry = s.sample_support_query(32, 32, contiguous=True)
    return [
        s.sample().observations,
        sup.observations,
        qry.observations,
        csup.observations,
        cqry.observations,
        s.sample_context(length=6).observations,
        s.sample_context(whole_episodes=True).observations,
        s.sample_negatives([1, 2], 64, 1.0).observations,
    ]


def test_same_seed_same_batches_and_global_rngs_untouched(ds):
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    a = draw_all(TaskBatchSampler(ds, "train", meta_batch=3, seed=14))
    b = draw_all(TaskBatchSampler(ds, "train", meta_batch=3, seed=14))
    c = draw_all(TaskBatchSampler(ds, "train", meta_batch=3, seed=15))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c) if x.shape == y.shape)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)


def test_packed_and_per_field_layouts_give_the_same_batches(ds):
    packed = TaskBatchSampler(ds, "train", meta_batch=3, seed=18)
    fields = TaskBatchSampler(ds, "train", meta_batch=3, seed=18, packed=False)
    assert packed.packed and not fields.packed
    for _ in range(2):
        sup_p, _ = packed.sample_support_query(16, 16)
        sup_f, _ = fields.sample_support_query(16, 16)
        ctx_p = packed.sample_context(length=25)  # some tasks padded
        ctx_f = fields.sample_context(length=25)
        for a, b in ((sup_p, sup_f), (ctx_p, ctx_f), (packed.sample(), fields.sample())):
            for name in ("observations", "actions", "rewards", "next_observations", "terminated", "truncated", "mc_returns", "mask", "task_features"):
                x, y = getattr(a, name), getattr(b, name)
                assert x.dtype == y.dtype and torch.equal(x, y), name
    # Zero copy: the per-field layout shares the dataset's memory.
    assert fields._fields["observations"].data_ptr() == ds.fields["observations"].ctypes.data


def test_exact_resume(ds):
    s = TaskBatchSampler(ds, "train", meta_batch=3, seed=16)
    draw_all(s)
    buf = io.BytesIO()
    torch.save(s.state_dict(), buf)
    expected = draw_all(s) + draw_all(s)
    resumed = TaskBatchSampler(ds, "train", meta_batch=3, seed=999)
    buf.seek(0)
    resumed.load_state_dict(torch.load(buf))
    got = draw_all(resumed) + draw_all(resumed)
    assert all(torch.equal(x, y) for x, y in zip(expected, got))
    assert resumed.seed == 16
    with pytest.raises(BadInput, match="drew from tasks"):
        TaskBatchSampler(ds, "all").load_state_dict(s.state_dict())
    with pytest.raises(BadInput, match="not a sampler state"):
        s.load_state_dict({"generator": 1})


# ------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda ds: TaskBatchSampler(ds, "train", meta_batch=5), "pool holds 4 tasks"),
        (lambda ds: TaskBatchSampler(ds, "valid"), "unknown split"),
        (lambda ds: TaskBatchSampler(tagged_dataset(rows=(30, 30), n_test=0), "test"), "has no tasks"),
        (lambda ds: TaskBatchSampler(ds, [0, 9]), "0..5"),
        (lambda ds: TaskBatchSampler(ds, [1, 1]), "repeats"),
        (lambda ds: TaskBatchSampler(ds, ["a"]), "0..5"),
        (lambda ds: TaskBatchSampler(ds, [1.5]), "0..5"),
        (lambda ds: TaskBatchSampler(ds, []), "empty"),
        (lambda ds: TaskBatchSampler(ds, batch_size=0), "batch_size"),
        (lambda ds: TaskBatchSampler(ds).sample_support_query(200, 200), "task 0 holds 300"),
        (lambda ds: TaskBatchSampler(ds).sample_support_query(300, 1, contiguous=True), "holds 300"),
        (lambda ds: TaskBatchSampler(ds).sample_context(), "length"),
        (lambda ds: TaskBatchSampler(ds).sample_context(length=0), "length=0"),
        (lambda ds: TaskBatchSampler(even_episodes(), "all").sample_context(length=9, whole_episodes=True), "no episode of at most 9 rows"),
        (lambda ds: TaskBatchSampler(ds).sample_negatives([0], 10, -1.0), "alpha"),
        (lambda ds: TaskBatchSampler(ds, [2]).sample_negatives([2], 10, 0.0), "no other task"),
        (lambda ds: TaskBatchSampler(ds).adaptation_batch(0, size=301), "holds 300"),
        (lambda ds: TaskBatchSampler(ds).adaptation_batch(6), "0..5"),
        (lambda ds: TaskBatchSampler(ds).sample(tasks=[0, 1, 2, 3, 4, 5, 6]), "0..5"),
    ],
)
def test_bad_arguments_raise_one_clear_error(ds, make, match):
    with pytest.raises(BadInput, match=match) as info:
        make(ds)
    assert "\n" not in str(info.value)


def test_sampler_reads_a_loaded_memory_mapped_dataset(synthetic_dataset):
    ds = load(synthetic_dataset, memory_budget_mb=0)  # forces the read-only memory map
    assert isinstance(ds.fields["observations"], np.memmap)
    s = TaskBatchSampler(ds, "train", meta_batch=2, batch_size=32, seed=0)
    assert not s.packed  # no copy of a memory-mapped dataset into RAM
    b = s.sample()
    ids = b.task_index.numpy()
    assert b.observations.shape == (2, 32, ds.obs_dim)
    for t, task in enumerate(ids):
        rows = ds.task_arrays(int(task))["observations"]
        assert all((rows == o).all(1).any() for o in b.observations[t].numpy())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_match_cpu(ds):
    cpu = draw_all(TaskBatchSampler(ds, "train", meta_batch=3, seed=17))
    gpu = draw_all(TaskBatchSampler(ds, "train", meta_batch=3, seed=17, device="cuda"))
    assert all(g.is_cuda and torch.equal(c, g.cpu()) for c, g in zip(cpu, gpu))


def test_batch_to_and_task_keep_optional_fields(ds):
    s = TaskBatchSampler(ds, "all", seed=19)
    plain = s.sample(batch_size=4)
    assert plain.to("cpu").row_task_index is None and plain.task(1).row_task_index is None
    neg = s.sample_negatives([0, 1, 2], 8, 0.0)
    one = neg.task(1)
    assert one.observations.shape == (1, 8, OBS) and one.row_task_index.shape == (1, 8)
    assert torch.equal(one.row_task_index[0], neg.row_task_index[1]) and one.task_index.tolist() == [1]
