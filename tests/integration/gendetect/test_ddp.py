"""Training scales out: a two-process DDP fit on CPU (gloo) gives a normal bundle.

Lightning's "ddp" strategy starts the other ranks by running the caller's
script again with the same arguments, which cannot work from inside pytest.
So the test runs this file as a script in a subprocess (the `__main__`
block): that process is rank 0, Lightning starts rank 1 from the same
command line, and every rank writes what it fitted to the output folder.
The test then checks, from outside:
- both ranks trained (ranks 0 and 1 report themselves, only rank 0 is
  `is_global_zero` and only it saved a bundle), and each knew its rank from
  the environment before training (`is_rank_zero_process`);
- gradients were averaged: both ranks end with the same scores;
- the saved bundle is a normal one: it loads, scores finitely and exactly
  as rank 0 scored, and predicts and explains.
The ensemble of a VAE and a GAN covers two Trainer runs in one launch and
the GAN's two optimisers (DDP must look for unused parameters there).

On a GPU machine the same script runs with `--accelerator gpu --devices N`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

N_FEATURES = 6
FIT = {
    "ensemble": ["vae", "gan"],
    "ensemble_weights": [1.0, 1.0],
    "max_epochs": 2,
    "batch_size": 128,
    "seed": 0,
    "alert_rate": 0.05,
}


def _data(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mix = np.random.default_rng(7).normal(size=(2, N_FEATURES))
    return rng.normal(size=(n, 2)) @ mix + 0.1 * rng.normal(size=(n, N_FEATURES))


def test_two_process_ddp_fit_gives_a_normal_bundle(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = {r: json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)}
    assert ranks[0]["is_global_zero"] and not ranks[1]["is_global_zero"]
    assert ranks[0]["rank_zero_env"] and not ranks[1]["rank_zero_env"]
    assert ranks[0]["world_size"] == ranks[1]["world_size"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["bundle"]  # rank 0 only
    scores = {r: np.load(tmp_path / f"scores_rank{r}.npy") for r in (0, 1)}
    # Same weights on both ranks (DDP averages gradients) and the same
    # statistics: the two copies score alike.
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-5)

    from gendetect.bundle import FraudModelBundle

    bundle = FraudModelBundle.load(tmp_path / "bundle")
    x = _data(300, seed=1)
    loaded = bundle.decision_function(x)
    assert np.isfinite(loaded).all()
    np.testing.assert_array_equal(loaded, scores[0])
    assert set(bundle.predict(x)) <= {0, 1}
    assert len(bundle.explain(x[:5])) == 5
    training = bundle.metadata["training"]
    assert set(training) == {"vae", "gan"}
    for kind in ("vae", "gan"):
        assert training[kind]["epochs_run"] == FIT["max_epochs"]
        assert training[kind]["best_epoch"] >= 0
        assert len(ranks[0]["history"][kind]) == FIT["max_epochs"]


def _fit_as_one_rank(out: Path, accelerator: str, devices: int) -> None:
    """Run by every rank: fit, score, report; rank 0 saves the bundle."""
    import torch
    import torch.distributed as dist

    import gendetect
    from gendetect.models.training import is_rank_zero_process

    torch.set_num_threads(1)
    # Asked before any Trainer exists, as a job opening an MLflow run would.
    rank_zero_env = is_rank_zero_process()
    det = gendetect.make_detector(
        "ensemble", accelerator=accelerator, devices=devices, strategy="ddp", **FIT
    ).fit(_data(1500, seed=0))
    assert det.detector_ is not None
    rank = det.detector_.members[0].training_.global_rank
    np.save(out / f"scores_rank{rank}.npy", det.decision_function(_data(300, seed=1)))
    report = {
        "rank": rank,
        "is_global_zero": det.detector_.is_global_zero,
        "rank_zero_env": rank_zero_env,
        "world_size": dist.get_world_size() if dist.is_initialized() else 1,
        "history": {m.kind: m.training_.history for m in det.detector_.members},
    }
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    if det.detector_.is_global_zero:
        det.save(out / "bundle")
    if dist.is_initialized():
        # Rank 0 (the process the test waits for) leaves after every rank wrote.
        dist.barrier()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--devices", type=int, default=2)
    args = parser.parse_args()
    _fit_as_one_rank(args.out, args.accelerator, args.devices)
