"""What slicing, Minari export/import and publish/pull cost on a mid-sized dataset.

    .venv/bin/python benchmarks/bench_interop.py [--rows 200000] [--tasks 5] [--obs-dim 27] [--act-dim 8] [--s3]

Writes a synthetic dataset (ant_dir tasks and row sizes, random observations) into a temporary catalog
root, then times:
- slice --quality expert (rewrites a third of the rows) and a re-split (hard links, no rewrite);
- export to Minari (one HDF5 Minari dataset per task) and import back (with an equality check);
- publish to a local folder and pull back (every checksum verified);
- with --s3: the same through moto's S3 server on 127.0.0.1 (a local HTTP round trip per file).
Prints seconds and transitions per second for each step.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import omrl_data  # noqa: E402
from omrl_data.minari_io import export_minari, import_minari  # noqa: E402
from omrl_data.publish import publish, pull  # noqa: E402
from omrl_data.slicing import SliceSpec, slice_dataset  # noqa: E402
from omrl_data.store import catalog  # noqa: E402
from omrl_data.store.writer import StagedDataset  # noqa: E402
from omrl_data.tasks import get_family  # noqa: E402
from tests.synthetic import synthetic_task_arrays  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000, help="transitions in total")
    ap.add_argument("--tasks", type=int, default=5)
    ap.add_argument("--obs-dim", type=int, default=27)
    ap.add_argument("--act-dim", type=int, default=8)
    ap.add_argument("--s3", action="store_true", help="also publish/pull through moto's S3 server")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="omrl-bench-interop-"))
    root = tmp / "catalog"
    os.environ["MINARI_DATASETS_PATH"] = str(tmp / "minari")
    per_task = args.rows // args.tasks
    staged = StagedDataset.create(root, "ant_dir", "bench")
    for i in range(args.tasks):
        staged.write_task(i, synthetic_task_arrays(per_task, args.obs_dim, args.act_dim, horizon=200, task_index=i))
    family = get_family("ant_dir")
    tasks = family.sample_tasks(args.tasks, seed=0)
    staged.commit({"family": "ant_dir", "tasks": tasks.to_dict(), "env_id": family.env_id, "env_kwargs": {},
                   "obs_dim": args.obs_dim, "act_dim": args.act_dim, "gamma": 0.99, "horizon": 200,
                   "observation_space": {"type": "Box", "shape": [args.obs_dim], "low": None, "high": None, "dtype": "float32"},
                   "action_space": {"type": "Box", "shape": [args.act_dim], "low": -1.0, "high": 1.0, "dtype": "float32"}})
    pid = staged.dataset_id
    n = per_task * args.tasks
    size = catalog.folder_size(catalog.resolve(pid, root))
    print(f"dataset: {args.tasks} tasks x {per_task:,} rows = {n:,} transitions, obs {args.obs_dim}, act {args.act_dim}, {size / 2**20:.1f} MiB on disk")

    def report(what, seconds, rows=n):
        print(f"{what:<44} {seconds:7.2f} s   {rows / seconds:>12,.0f} transitions/s")

    s, _ = timed(lambda: slice_dataset(pid, "expert", SliceSpec(quality="expert"), root=root))
    report("slice --quality expert (rewrites 1/3)", s)
    s, _ = timed(lambda: slice_dataset(pid, "resplit", SliceSpec(resplit="explicit", resplit_args={"test_tasks": [0]}), root=root))
    report("slice --resplit (hard links)", s)
    s, ids = timed(lambda: export_minari(pid, root=root))
    report("export --format minari", s)
    s, back = timed(lambda: import_minari([pid], "back", root=root))
    report("import-minari", s)
    a, b = omrl_data.load(pid, root=root), omrl_data.load(back, root=root)
    assert all(np.array_equal(a.fields[k], b.fields[k]) for k in a.fields), "round trip changed values"
    remote = tmp / "remote"
    s, _ = timed(lambda: publish(pid, str(remote), root=root, card=False))
    report("publish to a local folder", s)
    s, _ = timed(lambda: pull(pid, str(remote), root=tmp / "other"))
    report("pull from a local folder (verified)", s)
    if args.s3:
        _s3(pid, root, tmp, report)


def _s3(pid, root, tmp, report):
    import logging

    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for k, v in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"), ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ[k] = v
    s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint}).mkdir("bench")
    s, _ = timed(lambda: publish(pid, "s3://bench/omrl", root=root, endpoint_url=endpoint, card=False))
    report("publish to S3 (moto on 127.0.0.1)", s)
    s, _ = timed(lambda: pull(pid, "s3://bench/omrl", root=tmp / "other-s3", endpoint_url=endpoint))
    report("pull from S3 (moto on 127.0.0.1, verified)", s)
    server.stop()


if __name__ == "__main__":
    main()
