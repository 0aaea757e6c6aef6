"""Seconds per meta-step and per evaluation of each algorithm at the small budget's sizes."""
import sys, time, json, os
import torch
from omrl_studies import recipes
from omrl_algos.train import resolve_config, load_dataset, build_algorithm, resolve_dataset_settings, set_threads, check_device
from omrl_algos.evaluation import Evaluator

DS = {"point_robot_sparse": "omrl/point_robot_sparse/fidelity-small-v1", "cheetah_vel": "omrl/cheetah_vel/vel10b-v1",
      "hopper_params": "omrl/hopper_params/fidelity-small-v1"}
fams = sys.argv[1].split(",")
algos = sys.argv[2].split(",")
n = int(sys.argv[3]) if len(sys.argv) > 3 else 40
do_eval = len(sys.argv) > 4 and sys.argv[4] == "eval"
for fam in fams:
    for algo in algos:
        s = recipes.as_overrides(recipes.training_settings("small", fam, algo)) + [f"dataset={DS[fam]}"]
        cfg = resolve_config(algo, s)
        set_threads(cfg)
        ds = load_dataset(cfg)
        resolve_dataset_settings(cfg, ds)
        torch.manual_seed(0)
        a = build_algorithm(cfg, ds.obs_dim, ds.act_dim, check_device("cpu"))
        a.set_action_bounds(*ds.action_bounds)
        sampler = a.make_sampler(ds, 0, "cpu")
        if algo in ("r2pgo", "borel"):  # time both phases
            a.meta_step.fill_(10_000)
        for _ in range(3):
            a.train_step(sampler)
        t = time.time()
        for _ in range(n):
            a.train_step(sampler)
        per = (time.time() - t) / n
        out = {"family": fam, "algo": algo, "s_per_step": round(per, 4), "threads": torch.get_num_threads()}
        if algo in ("r2pgo", "borel"):
            a.meta_step.fill_(0)
            t = time.time()
            for _ in range(n):
                a.train_step(sampler)
            out["s_per_step_encoder_phase"] = round((time.time() - t) / n, 4)
        if do_eval:
            ev = Evaluator(ds, cfg.eval, seed=0, device="cpu")
            t = time.time()
            r = ev.evaluate(a)
            out["s_per_eval"] = round(time.time() - t, 1)
            out["mode"] = r["mode"]
            ev.close()
        print(json.dumps(out), flush=True)
