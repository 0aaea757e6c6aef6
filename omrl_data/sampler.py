"""The task-batch sampler: the only way algorithms read a dataset.

``TaskBatchSampler`` holds the batch fields of a :class:`~omrl_data.dataset.MultiTaskDataset` as
torch tensors (shared with the numpy arrays on CPU, copied once to another device) and draws
:class:`~omrl_data.batch.TaskBatch` es ``[T, B, ...]`` by one ``index_select`` per field. Every
random draw comes from the sampler's own CPU ``torch.Generator`` (indices are moved to the
device afterwards), so ``state_dict()`` / ``load_state_dict()`` resume the exact stream and the
global RNGs are never touched.

Row draws, per method:

- ``sample``: T distinct tasks uniformly (all of them, in pool order, when T is the pool size),
  B rows per task uniformly **with replacement** (independent draws, like a replay buffer).
- ``sample_support_query``: B1 + B2 distinct rows per task (without replacement), the first B1
  the support set, the rest the query set; or, with ``contiguous=True``, the support set one
  window of B1 consecutive rows in collect order (it may cross episode boundaries, as the MACAW
  reference's trajectory batches did) and the query set B2 distinct rows outside it.
- ``sample_context``: one window of C consecutive rows inside one episode per task, uniform over
  all such windows of the task; or whole episodes padded to a common length with ``mask``.
- ``sample_negatives``: R2PGO's negatives, ``N_ij`` rows (or windows) from task j for anchor i,
  proportional to ``exp(-alpha * |p_i - p_j|^2)`` (alpha relative to the features' scale by
  default) and rounded so they sum to ``n_total``; then rows uniformly in the source task.
- ``adaptation_batch``: a fixed set of rows of one task, a pure function of (seed, task).
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Sequence

import numpy as np
import torch

from omrl_data.batch import TaskBatch
from omrl_data.errors import BadInput

# Fields every batch carries, in TaskBatch order; float fields become float32, flags bool.
BATCH_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminated", "truncated", "mc_returns")
FLAG_FIELDS = ("terminated", "truncated")
STATE_VERSION = 1
_RANDINT_HIGH = 2**62  # draws are randint(0, 2^62) % n: exact ints, bias below n / 2^62


class TaskBatchSampler:
    """Draws task batches ``[T, B, ...]`` from a multi-task dataset.

    dataset: a ``MultiTaskDataset`` (``.tasks``, ``.fields``, ``.offsets``).
    tasks: the task pool: ``"train"``, ``"test"``, ``"all"`` or a list of task indices.
    meta_batch: T, tasks per batch (default: the whole pool).
    batch_size: B, transitions per task for ``sample()``.
    seed: seed of the sampler's generator (and of ``adaptation_batch``).
    device: where the data and the batches live (``"cpu"``, ``"cuda"``, ...).
    packed: layout of the data the sampler holds. True: one ``[R, D]`` float32 tensor with
        every batch field side by side (a copy of the batch fields; a batch is one gather of
        whole rows, faster because each row is one run of memory: see README.md, "The task-batch sampler"); the
        batch's fields are then column views of one gathered tensor. False: one tensor per
        field, sharing memory with the dataset's arrays on CPU (no copy). None (default):
        packed, unless the dataset is memory-mapped (larger than the memory budget) and
        stays on the CPU, where a copy would pull it all into RAM.
    """

    def __init__(
        self,
        dataset: Any,
        tasks: str | Sequence[int] = "train",
        meta_batch: int | None = None,
        batch_size: int = 256,
        seed: int = 0,
        device: str | torch.device = "cpu",
        packed: bool | None = None,
        bootstrap: bool = False,
        normalise_actions: bool = False,
    ):
        self.dataset = dataset
        self.device = torch.device(device)
        self.seed = int(seed)
        n_tasks = len(dataset.tasks)
        self._offsets = torch.as_tensor(np.asarray(dataset.offsets, dtype=np.int64))
        self._sizes = self._offsets[1:] - self._offsets[:-1]
        self.pool = self._resolve_pool(tasks, n_tasks)
        self.meta_batch = len(self.pool) if meta_batch is None else int(meta_batch)
        if not 1 <= self.meta_batch <= len(self.pool):
            raise BadInput(f"meta_batch={meta_batch} but the pool holds {len(self.pool)} tasks; use 1..{len(self.pool)}")
        self.batch_size = _positive(batch_size, "batch_size")

        missing = [f for f in BATCH_FIELDS if f not in dataset.fields]
        if missing:
            raise BadInput(f"the dataset lacks fields {missing}; the sampler needs {list(BATCH_FIELDS)}")
        if packed is None:
            mapped = any(isinstance(dataset.fields[f], np.memmap) for f in BATCH_FIELDS)
            packed = not (mapped and self.device.type == "cpu")
        self.packed = bool(packed)
        self._fields: dict[str, torch.Tensor] = {}
        self._columns: dict[str, tuple[int, int, tuple[int, ...]]] = {}  # packed: field -> (lo, hi, row shape)
        if self.packed:
            self._packed = self._pack(dataset.fields)
        else:
            self._fields = {name: self._to_device(dataset.fields[name], name) for name in BATCH_FIELDS}
        self._features = torch.as_tensor(np.asarray(dataset.tasks.features, dtype=np.float32)).to(self.device)
        self._features64 = torch.as_tensor(np.asarray(dataset.tasks.features, dtype=np.float64))  # for the kernel
        self._pool_t = torch.as_tensor(self.pool, dtype=torch.int64)
        self._generator = torch.Generator().manual_seed(self.seed)
        self._episodes: _Episodes | None = None  # built on first use by sample_context
        self._windows: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # length C -> window tables
        self._scratch: torch.Tensor | None = None  # [R] int32, built on first draw without replacement
        # bootstrap=True: batches also carry mc_bootstrap_discount and bootstrap_observations (s_T
        # of each row's episode), for targets R_t + gamma^(T-t) V(s_T) at time-limit truncations.
        self.bootstrap = bool(bootstrap)
        if self.bootstrap:
            eps = self._episode_table()
            end = (eps.start + eps.length - 1).repeat_interleave(eps.length)  # [R] last row of each row's episode
            self._end_row = end.to(self.device)
            disc = dataset.fields.get("mc_bootstrap_discount")
            rows = int(self._offsets[-1])
            disc = np.zeros(rows, np.float32) if disc is None else np.asarray(disc, dtype=np.float32)
            self._bootstrap_discount = torch.from_numpy(np.ascontiguousarray(disc)).to(self.device)
        # normalise_actions=True: actions are mapped from the env's box (dataset.action_bounds)
        # to [-1, 1] on the way out; the stored data keeps the env's own actions.
        self.normalise_actions = bool(normalise_actions)
        if self.normalise_actions:
            low, high = (torch.as_tensor(x, dtype=torch.float32) for x in dataset.action_bounds)
            self._action_center = ((high + low) / 2).to(self.device)
            self._action_half = ((high - low) / 2).to(self.device)

    # ---------------------------------------------------------------------------------- set-up
    def _resolve_pool(self, tasks: str | Sequence[int], n_tasks: int) -> list[int]:
        if isinstance(tasks, str):
            pool = [int(i) for i in self.dataset.tasks.indices(tasks)]  # BadInput for unknown splits
            if not pool:
                raise BadInput(f"split {tasks!r} of this dataset has no tasks; use another split or a list of task indices")
        else:
            pool = self._check_task_indices(tasks, "tasks")
        empty = [i for i in pool if int(self._sizes[i]) == 0]
        if empty:
            raise BadInput(f"tasks {empty} have no transitions; leave them out of the pool")
        return pool

    def _check_task_indices(self, tasks: Any, what: str) -> list[int]:
        n_tasks = len(self.dataset.tasks)
        values = torch.as_tensor(tasks).reshape(-1).tolist() if not isinstance(tasks, (list, tuple)) else list(tasks)
        if not values:
            raise BadInput(f"{what} is empty; give at least one task index")
        out = []
        for v in values:
            try:
                ok = not isinstance(v, (bool, str)) and int(v) == v and 0 <= int(v) < n_tasks
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise BadInput(f"{what} has {v!r}; task indices are integers 0..{n_tasks - 1}")
            out.append(int(v))
        if len(set(out)) != len(out):
            raise BadInput(f"{what} repeats task indices {sorted(out)}; give each task once")
        return out

    def _to_device(self, values: np.ndarray, name: str) -> torch.Tensor:
        array = np.ascontiguousarray(values)  # no copy when already contiguous
        with warnings.catch_warnings():
            # Memory-mapped caches are read-only; the sampler only ever reads them.
            warnings.simplefilter("ignore", UserWarning)
            tensor = torch.from_numpy(array)
        dtype = torch.bool if name in FLAG_FIELDS else torch.float32
        return tensor.to(device=self.device, dtype=dtype)

    def _pack(self, fields: Any) -> torch.Tensor:
        """``[R, D]`` float32 on the device: the batch fields side by side, flags as 0/1."""
        width = 0
        for name in BATCH_FIELDS:
            shape = tuple(np.shape(fields[name])[1:])
            size = int(np.prod(shape, dtype=np.int64))
            self._columns[name] = (width, width + size, shape)
            width += size
        rows = len(fields[BATCH_FIELDS[0]])
        packed = torch.empty((rows, width), dtype=torch.float32, device=self.device)
        chunk = 1 << 18  # bounded host memory while copying a large or memory-mapped dataset
        for lo in range(0, rows, chunk):
            hi = min(lo + chunk, rows)
            part = np.concatenate([np.asarray(fields[n][lo:hi], dtype=np.float32).reshape(hi - lo, -1) for n in BATCH_FIELDS], 1)
            packed[lo:hi] = torch.from_numpy(part).to(self.device)
        return packed

    def _read(self, flat: torch.Tensor, t: int, b: int) -> dict[str, torch.Tensor]:
        """Field name -> ``[T, B, ...]`` values of global rows ``flat [T * B]`` (on the device)."""
        if not self.packed:
            return {name: values.index_select(0, flat).view(t, b, *values.shape[1:]) for name, values in self._fields.items()}
        rows = self._packed.index_select(0, flat).view(t, b, -1)
        out = {}
        for name, (lo, hi, shape) in self._columns.items():
            col = rows[..., lo] if not shape else rows[..., lo:hi].view(t, b, *shape)
            out[name] = col != 0 if name in FLAG_FIELDS else col
        return out

    # ------------------------------------------------------------------------------ draw tools
    def _randint(self, n: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """Uniform ints in ``[0, n)``; ``n`` broadcasts against ``shape`` (CPU int64)."""
        return torch.randint(0, _RANDINT_HIGH, shape, generator=self._generator) % n

    def _draw_tasks(self, tasks: Any = None, meta_batch: int | None = None) -> torch.Tensor:
        """``[T]`` dataset task indices: the given ones, or T distinct pool tasks uniformly."""
        if tasks is not None:
            chosen = self._check_task_indices(tasks, "tasks")
            empty = [i for i in chosen if int(self._sizes[i]) == 0]
            if empty:
                raise BadInput(f"tasks {empty} have no transitions; choose tasks that have")
            return torch.as_tensor(chosen, dtype=torch.int64)
        t = self.meta_batch if meta_batch is None else int(meta_batch)
        if not 1 <= t <= len(self.pool):
            raise BadInput(f"meta_batch={meta_batch} but the pool holds {len(self.pool)} tasks; use 1..{len(self.pool)}")
        if t == len(self.pool):
            return self._pool_t.clone()
        return self._pool_t[torch.randperm(len(self.pool), generator=self._generator)[:t]]

    def _distinct_rows(self, sizes: torch.Tensor, k: int, what: str, task_ids: torch.Tensor) -> torch.Tensor:
        """``[T, k]`` local row indices, distinct within each task, uniform over ordered k-subsets.

        Tasks holding at least 2k rows: draw with replacement, then redraw every repeat of an
        earlier position until none is left. The rule ignores the values, so the result is
        invariant under relabelling a task's rows and hence uniform over ordered k-tuples of
        distinct rows. Smaller tasks (repeats would be frequent) take a prefix of a permutation.
        """
        small = sizes < k
        if bool(small.any()):
            i = int(torch.nonzero(small)[0])
            raise BadInput(f"{what} needs {k} distinct rows per task but task {int(task_ids[i])} holds {int(sizes[i])}; lower it")
        rows = self._randint(sizes[:, None], (len(sizes), k))
        big = sizes >= 2 * k
        if k > 1 and bool(big.any()):
            every = bool(big.all())
            sub, n, ids = (rows, sizes, task_ids) if every else (rows[big], sizes[big], task_ids[big])
            # Repeats found without sorting: each dataset row records the first position that
            # drew it (scatter with amin), and a position is a repeat if another came first.
            flat = (sub + self._offsets[ids][:, None]).reshape(-1)
            pos = torch.arange(flat.numel(), dtype=torch.int32)
            first = self._first_position()
            while True:
                first.scatter_reduce_(0, flat, pos, reduce="amin", include_self=False)
                repeat = torch.nonzero(first[flat] != pos).squeeze(1)
                if repeat.numel() == 0:
                    break
                owner = repeat // k
                flat[repeat] = self._randint(n[owner], (repeat.numel(),)) + self._offsets[ids[owner]]
            sub = flat.view(-1, k) - self._offsets[ids][:, None]
            if every:
                rows = sub
            else:
                rows[big] = sub
        for i in torch.nonzero(~big).flatten().tolist():
            rows[i] = torch.randperm(int(sizes[i]), generator=self._generator)[:k]
        return rows

    def _first_position(self) -> torch.Tensor:
        """Scratch ``[R]`` int32 for repeat detection; entries are only read after a write."""
        if self._scratch is None:
            self._scratch = torch.empty(int(self._offsets[-1]), dtype=torch.int32)
        return self._scratch

    def _read_one(self, name: str, flat: torch.Tensor) -> torch.Tensor:
        """``[N, ...]`` values of one field at global rows ``flat`` (on the device)."""
        if not self.packed:
            return self._fields[name].index_select(0, flat)
        lo, hi, _ = self._columns[name]
        return self._packed.index_select(0, flat)[:, lo:hi]

    def _gather(
        self,
        task_ids: torch.Tensor,
        rows: torch.Tensor,
        mask: torch.Tensor | None = None,
        row_task_index: torch.Tensor | None = None,
    ) -> TaskBatch:
        """Batch of global rows ``rows [T, B]`` (CPU int64) for tasks ``task_ids [T]``."""
        t, b = rows.shape
        flat = rows.reshape(-1).to(self.device)
        out = self._read(flat, t, b)
        if self.normalise_actions:
            out["actions"] = (out["actions"] - self._action_center) / self._action_half
        if self.bootstrap:
            out["mc_bootstrap_discount"] = self._bootstrap_discount.index_select(0, flat).view(t, b)
            out["bootstrap_observations"] = self._read_one("next_observations", self._end_row.index_select(0, flat)).view(t, b, -1)
        if mask is None:
            mask_d = torch.ones((t, b), dtype=torch.bool, device=self.device)
        else:
            mask_d = mask.to(self.device)
            if not bool(mask.all()):  # padded rows read as zeros, never as another row's data
                for name, values in out.items():
                    keep = mask_d.view(t, b, *([1] * (values.dim() - 2)))
                    out[name] = values * keep if values.dtype != torch.bool else values & keep
        task_d = task_ids.to(self.device)
        return TaskBatch(
            **out,
            task_index=task_d,
            task_features=self._features.index_select(0, task_d),
            mask=mask_d,
            row_task_index=None if row_task_index is None else row_task_index.to(self.device),
        )

    # ---------------------------------------------------------------------------------- batches
    def sample(self, batch_size: int | None = None, tasks: Sequence[int] | None = None) -> TaskBatch:
        """``[T, B, ...]``: T distinct pool tasks uniformly (or ``tasks``), B rows per task
        drawn uniformly with replacement. ``mask`` is all True."""
        task_ids = self._draw_tasks(tasks)
        b = self.batch_size if batch_size is None else _positive(batch_size, "batch_size")
        starts, sizes = self._offsets[task_ids], self._sizes[task_ids]
        rows = self._randint(sizes[:, None], (len(task_ids), b)) + starts[:, None]
        return self._gather(task_ids, rows)

    def sample_support_query(
        self,
        support: int = 256,
        query: int = 256,
        contiguous: bool = False,
        tasks: Sequence[int] | None = None,
        stride: int = 1,
    ) -> tuple[TaskBatch, TaskBatch]:
        """(support ``[T, B1, ...]``, query ``[T, B2, ...]``) for the same T tasks, with no row
        in both (MACAW's D_tr / D_ts). Rows are drawn without replacement inside a task;
        ``contiguous=True`` makes the support set one window of B1 rows in collect order, every
        ``stride``-th row (the MACAW reference read every 7th transition, so its 256-row window
        spans about 9 episodes), and draws the query set from the rows outside the window's span.
        A task too short for the span gets the largest stride that fits (at least 1)."""
        b1, b2 = _positive(support, "support"), _positive(query, "query")
        stride = _positive(stride, "stride")
        task_ids = self._draw_tasks(tasks)
        starts, sizes = self._offsets[task_ids], self._sizes[task_ids]
        if not contiguous:
            rows = self._distinct_rows(sizes, b1 + b2, "support + query", task_ids) + starts[:, None]
            return self._gather(task_ids, rows[:, :b1]), self._gather(task_ids, rows[:, b1:])
        short = sizes < b1 + b2
        if bool(short.any()):
            i = int(torch.nonzero(short)[0])
            raise BadInput(f"support + query = {b1 + b2} rows but task {int(task_ids[i])} holds {int(sizes[i])}; lower them")
        steps = window_strides(sizes, b1, b2, stride)  # [T]
        span = (b1 - 1) * steps + 1  # rows covered by each task's window
        first = self._randint((sizes - span + 1)[:, None], (len(task_ids), 1))  # window start
        support_rows = first + torch.arange(b1) * steps[:, None]
        # Query rows: distinct rows of the task with the window's span cut out, then shifted past it.
        q = self._distinct_rows(sizes - span, b2, "query", task_ids)
        q = q + span[:, None] * (q >= first)
        return (
            self._gather(task_ids, support_rows + starts[:, None]),
            self._gather(task_ids, q + starts[:, None]),
        )

    def sample_context(
        self,
        length: int | None = None,
        whole_episodes: bool = False,
        tasks: Sequence[int] | None = None,
        windows: int | None = None,
    ) -> TaskBatch:
        """Contiguous history per task for recurrent and context encoders.

        ``windows=N`` (with ``length``): N independent windows per task, ``[T, N, C, ...]``,
        ``mask [T, N, C]``: each inside one episode, as below.

        ``whole_episodes=False``: ``[T, C, ...]`` with C = ``length``: one window of C
        consecutive rows inside one episode, uniform over all such windows of the task. A task
        with no episode of C rows gives one of its episodes (uniformly) from its first row,
        padded at the end: padded rows are zeros with ``mask`` False.

        ``whole_episodes=True``: one episode per task, uniformly among the task's episodes,
        padded at the end to the longest in the batch (``[T, L_max, ...]``), or, with
        ``length``, to ``length`` rows and chosen only among episodes of at most ``length``
        rows (a fixed shape). ``mask`` marks the real rows.
        """
        task_ids = self._draw_tasks(tasks)
        eps = self._episode_table()
        lo, hi = eps.task_first[task_ids], eps.task_first[task_ids + 1]  # episode ranges
        if whole_episodes:
            if length is None:
                e = lo + self._randint((hi - lo)[:, None], (len(task_ids), 1)).squeeze(1)
            else:
                c = _positive(length, "length")
                e = self._pick_weighted(eps.length <= c, lo, hi, task_ids, f"episode of at most {c} rows")
            ep_len = eps.length[e]
            width = int(ep_len.max()) if length is None else int(length)
            steps = torch.arange(width)
            mask = steps[None, :] < ep_len[:, None]
            rows = eps.start[e][:, None] + torch.minimum(steps[None, :], ep_len[:, None] - 1)
            return self._gather(task_ids, rows, mask=mask)

        if length is None:
            raise BadInput("sample_context needs length=C for windows; or pass whole_episodes=True")
        c = _positive(length, "length")
        if windows is None:
            rows, mask = self._window_rows(task_ids, c)
            return self._gather(task_ids, rows, mask=mask)
        n = _positive(windows, "windows")
        rows, mask = self._window_rows(task_ids.repeat_interleave(n), c)
        return self._windows_batch(task_ids, rows.view(len(task_ids), n, c), mask.view(len(task_ids), n, c))

    def _window_rows(self, src: torch.Tensor, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        """For each task of ``src [M]``: one window of ``c`` consecutive rows inside one episode,
        uniform over all such windows of the task; a task with no episode of ``c`` rows gets one
        of its episodes from its first row, padded (``mask`` False). ``rows, mask [M, c]``."""
        eps = self._episode_table()
        lo, hi = eps.task_first[src], eps.task_first[src + 1]
        cum, totals = self._window_table(c)
        total = totals[src]
        has = total > 0
        u = self._randint(total.clamp(min=1)[:, None], (len(src), 1)).squeeze(1)
        # Window u of the task: find its episode by the cumulative window counts.
        e = (torch.searchsorted(cum, cum[lo] + u, right=True) - 1).clamp(max=len(eps.start) - 1)
        start = eps.start[e] + (cum[lo] + u - cum[e])
        steps = torch.arange(c)
        rows = start[:, None] + steps[None, :]
        mask = torch.ones((len(src), c), dtype=torch.bool)
        if not bool(has.all()):
            e_pad = lo + self._randint((hi - lo)[:, None], (len(src), 1)).squeeze(1)
            ep_len = eps.length[e_pad]
            pad_rows = eps.start[e_pad][:, None] + torch.minimum(steps[None, :], ep_len[:, None] - 1)
            rows = torch.where(has[:, None], rows, pad_rows)
            mask = has[:, None] | (steps[None, :] < ep_len[:, None])
        return rows, mask

    def _windows_batch(self, task_ids: torch.Tensor, rows: torch.Tensor, mask: torch.Tensor, row_task_index: torch.Tensor | None = None) -> TaskBatch:
        """A batch of windows ``[T, N, L, ...]`` from global rows ``rows [T, N, L]``."""
        t, n, c = rows.shape
        flat = self._gather(task_ids, rows.reshape(t, n * c), mask=mask.reshape(t, n * c), row_task_index=None)
        out = {}
        for f in dataclasses.fields(flat):
            v = getattr(flat, f.name)
            if f.name in ("task_index", "task_features") or v is None:
                out[f.name] = v
            else:
                out[f.name] = v.view(t, n, c, *v.shape[2:])
        out["row_task_index"] = None if row_task_index is None else row_task_index.to(self.device)
        return TaskBatch(**out)

    def sample_negatives(
        self,
        anchor_tasks: Sequence[int] | torch.Tensor,
        n_total: int,
        alpha: float,
        length: int | None = None,
        relative: bool = True,
        counts: str = "deterministic",
    ) -> TaskBatch:
        """R2PGO negatives (paper 004, eq. 4-5): ``[A, n_total, ...]`` rows, or with ``length=L``
        windows ``[A, n_total, L, ...]`` (inside one episode, ``mask`` as :meth:`sample_context`),
        from pool tasks other than each anchor.

        Task j gives anchor i ``N_ij`` of them, ``N_ij = w_ij * n_total`` with
        ``w_ij = b_ij / sum_k b_ik``, ``b_ij = exp(-alpha * |p_i - p_j|^2)`` on the task features
        (:meth:`negative_probabilities`; ``relative=True`` measures alpha against the pool's mean
        squared feature distance, so one alpha means the same on every family; ``alpha=0`` is
        uniform). ``counts="deterministic"``: the N_ij are rounded by largest remainders so they
        sum to ``n_total`` (:meth:`negative_counts`), rows grouped by source task in pool order;
        ``counts="random"``: each row's source task is drawn with probability ``w_ij``. Rows or
        windows are uniform within the source task. ``task_index``/``task_features`` are the
        anchors'; ``row_task_index [A, n_total]`` holds each row's source task.
        """
        anchors = torch.as_tensor(self._check_task_indices(anchor_tasks, "anchor_tasks"), dtype=torch.int64)
        n = _positive(n_total, "n_total")
        if counts == "deterministic":
            per_task = self.negative_counts(anchors, n, alpha, relative)  # [A, P]
            src_pos = torch.stack([torch.repeat_interleave(torch.arange(len(self.pool)), row) for row in per_task])
        elif counts == "random":
            probs = self.negative_probabilities(anchors, alpha, relative)  # [A, P]
            src_pos = torch.multinomial(probs, n, replacement=True, generator=self._generator)
        else:
            raise BadInput(f"counts={counts!r} must be deterministic or random")
        src = self._pool_t[src_pos]  # [A, n]
        if length is None:
            rows = self._randint(self._sizes[src], src.shape) + self._offsets[src]
            return self._gather(anchors, rows, row_task_index=src)
        c = _positive(length, "length")
        rows, mask = self._window_rows(src.reshape(-1), c)
        return self._windows_batch(anchors, rows.view(len(anchors), n, c), mask.view(len(anchors), n, c), row_task_index=src)

    def feature_scale(self) -> float:
        """The pool's mean squared distance between the features of two distinct tasks (1 when
        the pool has one task or all features are equal): the unit of a relative alpha."""
        feats = self._features64[self._pool_t]
        p = len(feats)
        if p < 2:
            return 1.0
        d2 = ((feats[:, None, :] - feats[None, :, :]) ** 2).sum(-1)
        scale = float(d2.sum() / (p * (p - 1)))
        return scale if scale > 0 else 1.0

    def negative_probabilities(self, anchor_tasks: Sequence[int] | torch.Tensor, alpha: float, relative: bool = True) -> torch.Tensor:
        """``[A, P]`` float64 (P = pool size, pool order): the share of anchor i's negatives from
        pool task j, ``b_ij / sum_k b_ik`` with the anchor itself at 0; ``relative``: alpha in
        units of 1 / :meth:`feature_scale`."""
        alpha = float(alpha)
        if not alpha >= 0 or alpha == float("inf"):
            raise BadInput(f"alpha={alpha} must be a finite number >= 0 (0 gives uniform negatives)")
        if relative:
            alpha = alpha / self.feature_scale()
        anchors = torch.as_tensor(self._check_task_indices(anchor_tasks, "anchor_tasks"), dtype=torch.int64)
        feats = self._features64
        d2 = ((feats[anchors][:, None, :] - feats[self._pool_t][None, :, :]) ** 2).sum(-1)
        logits = -alpha * d2  # log-space, so a large alpha cannot underflow every weight to 0
        logits[anchors[:, None] == self._pool_t[None, :]] = float("-inf")
        lonely = torch.isinf(logits).all(dim=1)
        if bool(lonely.any()):
            raise BadInput(f"anchor task {int(anchors[lonely][0])} has no other task in the pool {self.pool} to draw negatives from")
        return torch.softmax(logits, dim=1)

    def negative_counts(self, anchor_tasks: Sequence[int] | torch.Tensor, n_total: int, alpha: float, relative: bool = True) -> torch.Tensor:
        """``[A, P]`` int64: ``N_ij``, the shares of :meth:`negative_probabilities` times
        ``n_total`` rounded by largest remainders (floors, then one more to the tasks with the
        largest remainders, ties to the earlier pool task): each row sums to ``n_total``."""
        n = _positive(n_total, "n_total")
        exact = self.negative_probabilities(anchor_tasks, alpha, relative) * n
        out = torch.floor(exact).to(torch.int64)
        rest = exact - out
        for a in range(len(out)):
            short = n - int(out[a].sum())
            if short > 0:
                # stable sort on -remainder: ties keep pool order
                order = torch.sort(-rest[a], stable=True).indices[:short]
                out[a, order] += 1
        return out

    def adaptation_batch(self, task: int, size: int = 256, contiguous: bool = False, stride: int = 1, draw: int = 0) -> TaskBatch:
        """``[1, size, ...]``: the batch used to adapt on ``task`` (any task of the dataset).

        Rows: ``size`` distinct rows of the task, uniform, from a generator seeded by
        ``(seed, task)`` alone; ``contiguous=True`` gives one window of ``size`` rows in collect
        order instead, every ``stride``-th row (as :meth:`sample_support_query`). The same
        (seed, task, size, contiguous, stride, draw) always gives the same rows, and the call does
        not advance the sampler's own stream; ``draw`` = 1, 2, ... give further independent batches.
        """
        (t,) = self._check_task_indices([task], "task")
        size = _positive(size, "size")
        task_ids = torch.tensor([t])
        n = self._sizes[task_ids]
        if int(n[0]) < size:
            raise BadInput(f"adaptation batch of {size} rows but task {t} holds {int(n[0])}; lower size")
        state = self._generator.get_state()
        draw = int(draw)
        if draw < 0:
            raise BadInput(f"draw={draw} must be >= 0")
        entropy = [self.seed, t, 0xADA] + ([draw] if draw else [])  # draw 0: the batch of earlier versions
        seed = int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)
        self._generator.manual_seed(seed)
        try:
            if contiguous:
                steps = window_strides(n, size, 0, _positive(stride, "stride"))
                span = (size - 1) * steps + 1
                local = self._randint(n - span + 1, (1, 1)) + torch.arange(size) * steps[:, None]
            else:
                local = self._distinct_rows(n, size, "adaptation batch", task_ids)
        finally:
            self._generator.set_state(state)
        return self._gather(task_ids, local + self._offsets[task_ids][:, None])

    # ---------------------------------------------------------------------------- resumability
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to draw the same batches (save with ``torch.save``)."""
        return {"version": STATE_VERSION, "seed": self.seed, "pool": list(self.pool), "generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the stream saved by :meth:`state_dict` (same dataset and task pool)."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION or "generator" not in state:
            raise BadInput(f"not a sampler state (expected a dict from TaskBatchSampler.state_dict, version {STATE_VERSION})")
        if list(state.get("pool", [])) != self.pool:
            raise BadInput(f"the saved sampler drew from tasks {state.get('pool')}; this one draws from {self.pool}")
        self.seed = int(state["seed"])
        self._generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8).cpu())

    # ------------------------------------------------------------------------------- episodes
    def _episode_table(self) -> "_Episodes":
        if self._episodes is None:
            self._episodes = _Episodes.build(self.dataset)
        return self._episodes

    def _window_table(self, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``cum [E + 1]``: windows of C rows in episodes before e; ``totals [N]`` per task."""
        if c not in self._windows:
            eps = self._episode_table()
            per_episode = (eps.length - c + 1).clamp(min=0)
            cum = torch.cat([torch.zeros(1, dtype=torch.int64), per_episode.cumsum(0)])
            totals = cum[eps.task_first[1:]] - cum[eps.task_first[:-1]]
            self._windows[c] = (cum, totals)
        return self._windows[c]

    def _pick_weighted(self, ok: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, task_ids: torch.Tensor, what: str) -> torch.Tensor:
        """One episode per task, uniform among its episodes where ``ok`` holds."""
        cum = torch.cat([torch.zeros(1, dtype=torch.int64), ok.to(torch.int64).cumsum(0)])
        count = cum[hi] - cum[lo]
        if bool((count == 0).any()):
            i = int(torch.nonzero(count == 0)[0])
            raise BadInput(f"task {int(task_ids[i])} has no {what}; raise length or pass length=None")
        u = self._randint(count[:, None], (len(lo), 1)).squeeze(1)
        return torch.searchsorted(cum, cum[lo] + u, right=True) - 1

    def __repr__(self) -> str:
        return (
            f"TaskBatchSampler(tasks={len(self.pool)}, meta_batch={self.meta_batch}, batch_size={self.batch_size}, "
            f"seed={self.seed}, device={self.device})"
        )


class _Episodes:
    """Episode table of a dataset: maximal runs of equal ``episode_index`` inside each task.

    start ``[E]`` global first row, length ``[E]``, task_first ``[N + 1]``: episodes of task i
    are ``task_first[i]:task_first[i + 1]``.
    """

    def __init__(self, start: torch.Tensor, length: torch.Tensor, task_first: torch.Tensor):
        self.start, self.length, self.task_first = start, length, task_first

    @classmethod
    def build(cls, dataset: Any) -> "_Episodes":
        offsets = np.asarray(dataset.offsets, dtype=np.int64)
        n = int(offsets[-1])
        if "episode_index" in dataset.fields:
            ep = np.asarray(dataset.fields["episode_index"])
            boundary = np.zeros(n, dtype=bool)
            boundary[1:] = ep[1:] != ep[:-1]
        else:  # no episode numbers: an episode ends at a terminated or truncated row
            end = np.asarray(dataset.fields["terminated"], bool) | np.asarray(dataset.fields["truncated"], bool)
            boundary = np.zeros(n, dtype=bool)
            boundary[1:] = end[:-1]
        boundary[offsets[:-1][offsets[:-1] < n]] = True  # a task always starts an episode
        start = np.flatnonzero(boundary).astype(np.int64)
        length = np.diff(np.append(start, n))
        task_first = np.searchsorted(start, offsets, side="left").astype(np.int64)
        return cls(torch.from_numpy(start), torch.from_numpy(length), torch.from_numpy(task_first))


def window_strides(sizes: torch.Tensor, window: int, rest: int, stride: int) -> torch.Tensor:
    """Per task, the largest stride <= ``stride`` whose ``window``-row span leaves ``rest`` rows. ``[T]``."""
    fits = (sizes - rest - 1) // max(window - 1, 1)
    return torch.clamp(torch.minimum(fits, torch.full_like(sizes, stride)), min=1)


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise BadInput(f"{name}={value!r} must be a positive integer")
    return int(value)
