"""Training-time cost of the adversarial method: CPU time per training step (the attack inside the
batch plus the optimiser step) of baseline-mlp on a prepared data set, plain and with FGSM and PGD
variants, over the same 140 steps of one epoch (by hand, not a test). CPU time, not wall time, so
a busy machine does not blur the ratio; run with OMP_NUM_THREADS=1.

    OMP_NUM_THREADS=1 python benchmarks/bench_adversarial_cost.py /work/data/btc \
        benchmarks/results/partK-adversarial-baseline-mlp-cost.json
"""
import io, json, sys, tempfile, time
from rich.console import Console
from himari.plugin.manager import get_plugins
from himari.training import loop
from himari.training.config import merge_run_config
from himari.training.trainer import Trainer
import himari_builtin.training.adversarial as adv

acc = {"step": 0.0, "attack": 0.0, "n": 0}
orig_step, orig_get = loop.train_step, adv._Adversarial.__getitem__
def step(*a, **k):
    t = time.process_time(); r = orig_step(*a, **k); acc["step"] += time.process_time() - t; acc["n"] += 1; return r
def get(self, idx):
    t = time.process_time(); r = orig_get(self, idx); acc["attack"] += time.process_time() - t; return r
loop.train_step = step
adv._Adversarial.__getitem__ = get
variants = {"plain": [], "pgd-3 ratio 0.5 (default)": ["adversarial"], "fgsm ratio 0.5": ["adversarial", "adversarial.attack=fgsm"],
            "pgd-10 ratio 1.0": ["adversarial", "adversarial.steps=10", "adversarial.ratio=1.0"]}
out = {}
for name, v in variants.items():
    acc.update(step=0.0, attack=0.0, n=0)
    sets = ["train.epochs=1", "train.max_steps_per_epoch=140", "train.patience=0", "train.progress=false", *v[1:]]
    plugins = get_plugins()
    run = merge_run_config(plugins=plugins, overrides={"model": "baseline-mlp", "data": sys.argv[1],
                                                       "methods": v[:1]}, sets=sets)
    Trainer(run, plugins=plugins, run_dir=f"{tempfile.mkdtemp()}/run", console=Console(file=io.StringIO())).fit()
    ms = 1000 * (acc["step"] + acc["attack"]) / acc["n"]
    out[name] = {"steps": acc["n"], "ms_per_step": ms, "attack_ms_per_step": 1000 * acc["attack"] / acc["n"]}
    print(name, out[name], flush=True)
base = out["plain"]["ms_per_step"]
for k in out: out[k]["x_plain"] = out[k]["ms_per_step"] / base
print(json.dumps(out, indent=1))
json.dump({"data": sys.argv[1], "model": "baseline-mlp", "variants": out}, open(sys.argv[2], "w"), indent=1)
