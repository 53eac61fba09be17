"""Quality benchmark: gendetect's detectors against peers on two tracks.

    python benchmarks/quality.py --data ../shared/data [--track handbook|labelled|adbench|all]
        [--seeds 5] [--draws 5] [--quick] [--detectors a,b] [--out benchmarks/results]

Handbook track: Fraud Detection Handbook chapter 7 unsupervised setup (see
benchmarks/protocols.py), four consecutive test weeks. ADBench track: twelve
public tabular anomaly datasets, seeds 0-2. All detectors run in this process
on identical rows; results go to quality.md and quality.json. Labelled
track: the handbook protocol with the training week's labels, all of them
(seeds) or a random 10% of the frauds (draws), gendetect's label-aware kinds
beside scikit-learn's gradient boosting and PyOD's XGBOD.
"""

from __future__ import annotations

import os

# Pin every thread pool before numpy/torch load: on a shared 2-core machine a
# second intra-op thread makes small models 40-100x slower when the other core
# is busy, and a fixed setting keeps fit times comparable between runs.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

if __package__ in (None, ""):
    # Run as a script: make the repository root importable (benchmarks.*,
    # gendetect) without requiring an installed package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import peers, protocols, report  # noqa: E402
from gendetect import metrics  # noqa: E402

ALERT_RATE = 0.01
CARD_K = 100
QUICK_HANDBOOK_TRAIN_ROWS = 10_000
QUICK_ADBENCH_ROWS = 5_000


def _log(msg: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {msg}", flush=True)


class Skip(Exception):
    """A detector that cannot be built or run; recorded, not fatal."""


def _fit_and_score(
    spec: peers.DetectorSpec, seed: int, train: Any, test: Any, y: np.ndarray | None = None
) -> tuple[np.ndarray, float, float]:
    try:
        detector = spec.factory(seed)
    except Exception as exc:  # a gendetect kind that is not implemented yet
        raise Skip(f"{spec.name}: could not build ({type(exc).__name__}: {exc})") from exc
    try:
        t0 = time.perf_counter()
        if y is None:
            detector.fit(train)
        else:
            detector.fit(train, y)  # type: ignore[call-arg]
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = np.asarray(detector.decision_function(test), dtype=np.float64).ravel()
        score_s = time.perf_counter() - t0
    except Exception as exc:
        traceback.print_exc()
        raise Skip(f"{spec.name} seed {seed}: failed ({type(exc).__name__}: {exc})") from exc
    if scores.shape[0] != len(test):
        raise Skip(f"{spec.name}: {scores.shape[0]} scores for {len(test)} rows")
    if not np.isfinite(scores).all():
        # Metrics reject nan; an infinite or nan score is a detector bug to
        # report, not to hide by clipping.
        raise Skip(f"{spec.name} seed {seed}: non-finite scores")
    return scores, fit_s, score_s


# --------------------------------------------------------------------------- handbook


def run_handbook(
    data_dir: Path,
    specs: list[peers.DetectorSpec],
    seeds: Sequence[int],
    quick: bool,
    notes: list[str],
    n_weeks: int = len(protocols.HANDBOOK_TEST_STARTS),
) -> dict[str, Any]:
    specs = [s for s in specs if peers.HANDBOOK in s.tracks]
    df = protocols.load_handbook(data_dir)
    starts = protocols.HANDBOOK_TEST_STARTS[: 1 if quick else n_weeks]
    runs: list[dict[str, Any]] = []
    weeks: dict[str, dict[str, Any]] = {}
    skipped: set[str] = set()
    for start in starts:
        week = protocols.handbook_week(
            df, start, max_train_rows=QUICK_HANDBOOK_TRAIN_ROWS if quick else None
        )
        weeks[start] = _week_info(week)
        _log(
            f"handbook week {start}: train {weeks[start]['n_train']} rows, "
            f"test {weeks[start]['n_test']} rows ({weeks[start]['n_test_frauds']} frauds)"
        )
        raw_frames = None
        for spec in specs:
            if spec.name in skipped:
                continue
            if spec.input == "raw" and raw_frames is None:
                raw_frames = protocols.raw_pipeline_frames(df, start)
            train, test = raw_frames if spec.input == "raw" else (week.x_train, week.x_test)
            for seed in seeds:
                try:
                    scores, fit_s, score_s = _fit_and_score(spec, seed, train, test)
                except Skip as exc:
                    notes.append(f"handbook {start}: {exc}")
                    _log(f"  skip {exc}")
                    skipped.add(spec.name)
                    break
                run = _handbook_run(spec.name, start, seed, week, scores, fit_s, score_s)
                runs.append(run)
                m = run["metrics"]
                _log(
                    f"  {spec.name:<20} seed {seed}: AUC {m['roc_auc']:.3f} "
                    f"AP {m['average_precision']:.3f} CP@100 {m['card_precision_at_100']:.3f} "
                    f"fit {fit_s:.1f}s"
                )
    return {
        "protocol": {
            "delta_train": protocols.DELTA_TRAIN,
            "delta_delay": protocols.DELTA_DELAY,
            "delta_test": protocols.DELTA_TEST,
            "features": list(protocols.HANDBOOK_FEATURES),
            "scaling": "StandardScaler fit on the training week",
            "known_compromised_removed": True,
            "card_precision": f"top {CARD_K} cards per day, cards detected earlier removed",
            "alert_rate": ALERT_RATE,
            "max_train_rows": QUICK_HANDBOOK_TRAIN_ROWS if quick else None,
        },
        "weeks": weeks,
        "runs": runs,
    }


def _week_info(week: protocols.HandbookWeek) -> dict[str, Any]:
    def span(frame: Any) -> str:
        days = frame["TX_DATETIME"].dt.date
        return f"{days.min()}..{days.max()}"

    return {
        "train_days": span(week.train),
        "test_days": span(week.test),
        "n_train": len(week.train),
        "n_train_frauds": int(week.train["TX_FRAUD"].sum()),
        "n_test": len(week.test),
        "n_test_frauds": int(week.test["TX_FRAUD"].sum()),
    }


def _handbook_run(
    name: str,
    start: str,
    seed: int,
    week: protocols.HandbookWeek,
    scores: np.ndarray,
    fit_s: float,
    score_s: float,
) -> dict[str, Any]:
    y = week.y_test
    values = metrics.evaluate_scores(y, scores, ALERT_RATE)
    values["card_precision_at_100"] = metrics.card_precision_at_k(
        week.test["TX_TIME_DAYS"].to_numpy(),
        week.test["CUSTOMER_ID"].to_numpy(),
        y,
        scores,
        k=CARD_K,
    )
    by_scenario = metrics.recall_by_group(
        y, scores, week.test["TX_FRAUD_SCENARIO"].to_numpy(), ALERT_RATE
    )
    return {
        "detector": name,
        "test_start": start,
        "seed": seed,
        "fit_seconds": fit_s,
        "score_seconds": score_s,
        "metrics": values,
        "recall_by_scenario": {str(k): v for k, v in by_scenario.items()},
    }


# --------------------------------------------------------------------------- labelled


# (name, description) of the label settings of the labelled track.
LABEL_SETTINGS: tuple[tuple[str, str], ...] = (
    ("all_labels", "every training-week label known"),
    ("frauds_10pct", "a random 10% of the training-week frauds labelled, the rest unknown"),
)
FRAUD_SHARE = 0.10


def training_labels(y_true: np.ndarray, setting: str, draw: int) -> np.ndarray:
    """What the detectors are told: 1 / 0 for every row ("all_labels"), or 1
    for a random 10% of the frauds (draw = seed of the draw) and -1 for the
    rest ("frauds_10pct": genuine rows are not confirmed either)."""
    y_true = np.asarray(y_true).astype(np.int64)
    if setting == "all_labels":
        return y_true.copy()
    frauds = np.flatnonzero(y_true == 1)
    rng = np.random.default_rng(draw)
    chosen = rng.choice(frauds, size=max(1, round(FRAUD_SHARE * len(frauds))), replace=False)
    y = np.full(len(y_true), -1, dtype=np.int64)
    y[chosen] = 1
    return y


def run_labelled(
    data_dir: Path,
    specs: list[peers.DetectorSpec],
    seeds: Sequence[int],
    draws: Sequence[int],
    quick: bool,
    notes: list[str],
    n_weeks: int = len(protocols.HANDBOOK_TEST_STARTS),
) -> dict[str, Any]:
    """The handbook protocol with training-week labels: "all_labels" over
    the model seeds, "frauds_10pct" over the draws (draw d also seeds the
    models). Same rows, same process, same metrics as the handbook track."""
    df = protocols.load_handbook(data_dir)
    starts = protocols.HANDBOOK_TEST_STARTS[: 1 if quick else n_weeks]
    runs: list[dict[str, Any]] = []
    weeks: dict[str, dict[str, Any]] = {}
    skipped: set[str] = set()
    for start in starts:
        week = protocols.handbook_week(
            df, start, max_train_rows=QUICK_HANDBOOK_TRAIN_ROWS if quick else None
        )
        weeks[start] = _week_info(week)
        y_true = week.train["TX_FRAUD"].to_numpy()
        _log(f"labelled week {start}: {weeks[start]}")
        for setting, _ in LABEL_SETTINGS:
            for seed in seeds if setting == "all_labels" else draws:
                y = training_labels(y_true, setting, seed)
                for spec in specs:
                    if spec.name in skipped:
                        continue
                    try:
                        scores, fit_s, score_s = _fit_and_score(
                            spec, seed, week.x_train, week.x_test, y
                        )
                    except Skip as exc:
                        notes.append(f"labelled {start}: {exc}")
                        _log(f"  skip {exc}")
                        skipped.add(spec.name)
                        continue
                    run = _handbook_run(spec.name, start, seed, week, scores, fit_s, score_s)
                    run["setting"] = setting
                    run["labelled_frauds"] = int((y == 1).sum())
                    runs.append(run)
                    m = run["metrics"]
                    _log(
                        f"  {setting:<12} {spec.name:<24} seed {seed}: AUC {m['roc_auc']:.3f} "
                        f"AP {m['average_precision']:.3f} "
                        f"CP@100 {m['card_precision_at_100']:.3f} fit {fit_s:.1f}s"
                    )
    return {
        "protocol": {
            "split": "the handbook track's (train week, 7-day delay, test week)",
            "settings": dict(LABEL_SETTINGS),
            "fraud_share": FRAUD_SHARE,
            "unknown_labels": "-1 for gendetect; 0 for the supervised peers",
            "max_train_rows": QUICK_HANDBOOK_TRAIN_ROWS if quick else None,
        },
        "weeks": weeks,
        "runs": runs,
    }


# --------------------------------------------------------------------------- ADBench


def run_adbench(
    data_dir: Path,
    specs: list[peers.DetectorSpec],
    seeds: Sequence[int],
    quick: bool,
    notes: list[str],
    only: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    specs = [s for s in specs if peers.ADBENCH in s.tracks and s.input == "features"]
    files = protocols.adbench_files(data_dir, protocols.ADBENCH_QUICK if quick else only)
    if not files:
        notes.append(f"no ADBench files under {data_dir}/adbench")
    runs: list[dict[str, Any]] = []
    datasets: dict[str, dict[str, Any]] = {}
    skipped: set[str] = set()
    for path in files:
        for seed in seeds:
            split = protocols.adbench_split(
                path, seed, total_rows=QUICK_ADBENCH_ROWS if quick else None
            )
            if path.stem not in datasets:
                x_all, y_all = protocols.load_adbench(path)
                datasets[path.stem] = {
                    "n_rows": len(y_all),
                    "n_features": x_all.shape[1],
                    "anomaly_rate": float(y_all.mean()),
                    "n_train": len(split.y_train),
                    "n_test": len(split.y_test),
                }
                _log(f"adbench {path.stem}: {datasets[path.stem]}")
            for spec in specs:
                if spec.name in skipped:
                    continue
                try:
                    scores, fit_s, score_s = _fit_and_score(spec, seed, split.x_train, split.x_test)
                except Skip as exc:
                    notes.append(f"adbench {path.stem}: {exc}")
                    _log(f"  skip {exc}")
                    skipped.add(spec.name)
                    continue
                values = {
                    "roc_auc": metrics.roc_auc(split.y_test, scores),
                    "average_precision": metrics.average_precision(split.y_test, scores),
                }
                runs.append(
                    {
                        "detector": spec.name,
                        "dataset": path.stem,
                        "seed": seed,
                        "fit_seconds": fit_s,
                        "score_seconds": score_s,
                        "metrics": values,
                    }
                )
                _log(
                    f"  {path.stem:<16} {spec.name:<20} seed {seed}: "
                    f"AUC {values['roc_auc']:.3f} AP {values['average_precision']:.3f} "
                    f"fit {fit_s:.1f}s"
                )
    return {
        "protocol": {
            "split": "stratified 70/30",
            "scaling": "StandardScaler fit on the training part",
            "labels_in_training": "anomalies kept, labels unused",
        },
        "max_rows": protocols.ADBENCH_MAX_ROWS,
        "total_rows": QUICK_ADBENCH_ROWS if quick else None,
        "datasets": datasets,
        "runs": runs,
    }


# --------------------------------------------------------------------------- clean-normal


def run_clean_normal(
    data_dir: Path,
    specs: list[peers.DetectorSpec],
    seeds: Sequence[int],
    notes: list[str],
    only: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """DTE's clean-normal protocol on every ADBench file: the detectors learn
    from normal rows only (protocols.clean_normal_split)."""
    files = protocols.adbench_files(data_dir, only)
    runs: list[dict[str, Any]] = []
    datasets: dict[str, dict[str, Any]] = {}
    skipped: set[str] = set()
    for path in files:
        for seed in seeds:
            split = protocols.clean_normal_split(path, seed)
            datasets.setdefault(path.stem, {
                "n_train": len(split.y_train), "n_test": len(split.y_test),
                "n_features": split.x_train.shape[1],
                "test_anomaly_rate": float(split.y_test.mean()),
            })
            for spec in specs:
                if (spec.name, path.stem) in skipped:
                    continue
                # gendetect is told what the rows are: cleared (y = 0 each),
                # as a team passes its analysts' "genuine" verdicts; the
                # peers' fit takes no labels.
                cleared = (
                    np.zeros(len(split.y_train), dtype=np.int64)
                    if spec.family == "gendetect"
                    else None
                )
                try:
                    scores, fit_s, score_s = _fit_and_score(
                        spec, seed, split.x_train, split.x_test, cleared
                    )
                except Skip as exc:
                    notes.append(f"clean_normal {path.stem}: {exc}")
                    _log(f"  skip {exc}")
                    skipped.add((spec.name, path.stem))
                    continue
                runs.append(_tabular_run(spec.name, path.stem, seed, split.y_test, scores,
                                         fit_s, score_s))
    return {
        "protocol": {
            "split": "DTE: a random half of the normal rows trains; the other half and "
            "every anomaly test",
            "max_train_rows": protocols.CAPPED_TRAIN_ROWS,
            "max_test_rows": protocols.ADBENCH_MAX_ROWS,
            "scaling": "StandardScaler fit on the training part",
            "gendetect_labels": "fit(X, y) with y = 0 (cleared) for every training row",
        },
        "datasets": datasets,
        "runs": runs,
    }


def _tabular_run(
    name: str, dataset: str, seed: int, y_test: np.ndarray, scores: np.ndarray,
    fit_s: float, score_s: float, **extra: Any,
) -> dict[str, Any]:
    values = {
        "roc_auc": metrics.roc_auc(y_test, scores),
        "average_precision": metrics.average_precision(y_test, scores),
    }
    _log(
        f"  {dataset:<16} {name:<26} seed {seed} {extra or ''}: AUC {values['roc_auc']:.3f} "
        f"AP {values['average_precision']:.3f} fit {fit_s:.1f}s"
    )
    return {"detector": name, "dataset": dataset, "seed": seed, **extra,
            "fit_seconds": fit_s, "score_seconds": score_s, "metrics": values}


# --------------------------------------------------------------------------- few-label

FEW_LABEL_KS: tuple[int, ...] = (5, 10, 25, 50)
HANDBOOK_DATASET = "handbook"


def _few_label_sets(
    data_dir: Path, seeds: Sequence[int], only: tuple[str, ...] | None, handbook_weeks: int
) -> Iterator[tuple[str, int, protocols.TabularSplit]]:
    """(dataset, seed, split) of the few-label track: ADGym's split of every
    ADBench file, then the handbook's first `handbook_weeks` test weeks."""
    for path in protocols.adbench_files(data_dir, only):
        for seed in seeds:
            yield path.stem, seed, protocols.few_label_split(path, seed)
    if handbook_weeks and protocols.handbook_path(data_dir).exists():
        df = protocols.load_handbook(data_dir)
        for start in protocols.HANDBOOK_TEST_STARTS[:handbook_weeks]:
            week = protocols.handbook_week(df, start)
            name = f"{HANDBOOK_DATASET}_{start}"
            split = protocols.TabularSplit(
                dataset=name, seed=0, x_train=week.x_train, x_test=week.x_test,
                y_train=week.train["TX_FRAUD"].to_numpy().astype(np.int8), y_test=week.y_test,
            )
            yield name, 0, split


def run_few_label(
    data_dir: Path,
    specs: list[peers.DetectorSpec],
    gendetect_kinds: Sequence[str],
    seeds: Sequence[int],
    draws: Sequence[int],
    ks: Sequence[int],
    notes: list[str],
    only: tuple[str, ...] | None = None,
    handbook_weeks: int = 0,
) -> dict[str, Any]:
    """ADGym's few-label setting: k labelled anomalies drawn from the
    training part (draw d seeds the choice), every other row unknown; the
    supervised peers read unknown as normal. gendetect's detector is fitted
    once per (dataset, seed) without labels and its label-aware head is
    fitted on top of it per (k, draw), as `fit(X, y)` would (except that the
    k frauds stay in the networks' training rows: k of thousands)."""
    from gendetect import make_detector
    from gendetect.label_aware import LabelAwareHead

    runs: list[dict[str, Any]] = []
    datasets: dict[str, dict[str, Any]] = {}
    for name, seed, split in _few_label_sets(data_dir, seeds, only, handbook_weeks):
        datasets.setdefault(name, {
            "n_train": len(split.y_train), "n_test": len(split.y_test),
            "train_anomalies": int(split.y_train.sum()),
        })
        fitted = []
        for kind in gendetect_kinds:
            t0 = time.perf_counter()
            bundle = make_detector(kind, seed=seed).fit(split.x_train)
            fit_s = time.perf_counter() - t0
            x_train, x_test = bundle.features(split.x_train), bundle.features(split.x_test)
            test_evidence = bundle.detector_.evidence(x_test)
            runs.append(_tabular_run(f"gendetect_{kind}", name, seed, split.y_test,
                                     test_evidence.score, fit_s, 0.0, k=0, draw=0))
            fitted.append((kind, bundle, x_train, test_evidence))
        for k in ks:
            for draw in draws:
                labels = protocols.few_labels(split.y_train, k, draw)
                if labels is None:
                    notes.append(f"few_label {name}: fewer than {k} training anomalies")
                    break
                for kind, bundle, x_train, test_evidence in fitted:
                    params = bundle.check_params()
                    t0 = time.perf_counter()
                    head = LabelAwareHead(params.label_min_frauds, params.label_blend).fit(
                        bundle.detector_, x_train, labels.astype(np.int8), draw
                    )
                    fit_s = time.perf_counter() - t0
                    runs.append(_tabular_run(
                        f"gendetect_{kind}_labels", name, seed, split.y_test,
                        head.scores(test_evidence), fit_s, 0.0, k=k, draw=draw,
                    ))
                for spec in specs:
                    try:
                        scores, fit_s, score_s = _fit_and_score(
                            spec, draw, split.x_train, split.x_test, labels
                        )
                    except Skip as exc:
                        notes.append(f"few_label {name}: {exc}")
                        _log(f"  skip {exc}")
                        continue
                    runs.append(_tabular_run(spec.name, name, seed, split.y_test, scores,
                                             fit_s, score_s, k=k, draw=draw))
    return {
        "protocol": {
            "split": "ADGym: stratified 70/30; handbook: its train week / test week",
            "max_train_rows": protocols.CAPPED_TRAIN_ROWS,
            "ks": list(ks),
            "draws": list(draws),
            "unknown_labels": "-1 for gendetect; 0 for the supervised peers",
            "gendetect": "one unsupervised fit per (dataset, seed); the head per (k, draw)",
        },
        "datasets": datasets,
        "runs": runs,
    }


# --------------------------------------------------------------------------- environment


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    import torch

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "thread_env": {
            v: os.environ.get(v)
            for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        },
        "git_commit": commit,
        "versions": {
            d: _version(d)
            for d in ("numpy", "pandas", "scikit-learn", "torch", "pyod", "gendetect")
        },
    }


def _source(results: dict[str, Any], detectors: Sequence[str]) -> dict[str, Any]:
    """Which command, commit and time produced a track's runs of `detectors`."""
    env = results["environment"]
    return {
        "command": results["config"]["command"],
        "git_commit": env.get("git_commit"),
        "timestamp": env.get("timestamp"),
        "detectors": list(detectors),
    }


TRACKS: tuple[str, ...] = ("handbook", "labelled", "adbench", "clean_normal", "few_label")
SEEDED_MERGE = frozenset({"clean_normal", "few_label"})


def _merge_previous(results: dict[str, Any], path: Path, ran: set[str]) -> dict[str, Any]:
    """The results to write with --merge: this run's, plus from the report
    already at `path` the tracks this run did not execute and, within a
    track it did, the runs of detectors it did not run (so a slow peer can
    run as a separate job into the same report). Read at write time, so two
    jobs writing one report keep each other's finished work. Each track
    lists its sources: the command, commit and time behind its runs."""
    if not path.exists():
        return results
    previous = report.load_results(path)
    merged = dict(results)
    order = [s.name for s in [*peers.all_specs(None)[0], *peers.labelled_specs(),
                              *peers.few_label_specs()]]
    for name in TRACKS:
        if name not in previous:
            continue
        if name not in results:
            merged[name] = previous[name]
            continue
        # A run restricted to some datasets (--datasets) replaces only those;
        # in the new tracks only those label counts (--ks), seeds and draws,
        # so that seeds and draws can run as separate jobs.
        def key(run: dict[str, Any], name: str = name) -> tuple[Any, ...]:
            if name in SEEDED_MERGE:
                return run["dataset"], run.get("k"), run["seed"], run.get("draw")
            return (run["dataset"],)

        done = {key(r) for r in results[name]["runs"] if "dataset" in r}
        kept = [
            r
            for r in previous[name]["runs"]
            if r["detector"] not in ran or ("dataset" in r and key(r) not in done)
        ]
        if not kept:
            continue
        track = dict(results[name])
        runs = kept + results[name]["runs"]
        track["runs"] = sorted(
            runs, key=lambda r: order.index(r["detector"]) if r["detector"] in order else len(order)
        )
        if "weeks" in track:
            track["weeks"] = {**previous[name].get("weeks", {}), **track["weeks"]}
        if "datasets" in track:
            track["datasets"] = {**previous[name].get("datasets", {}), **track["datasets"]}
        kept_names = {r["detector"] for r in kept}
        earlier = []
        for src in previous[name].get("sources", []):
            still = [d for d in src["detectors"] if d in kept_names]
            if still:
                earlier.append({**src, "detectors": still})
        track["sources"] = [*results[name].get("sources", []), *earlier]
        merged[name] = track
    return merged


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, required=True, help="folder with handbook/ and adbench/"
    )
    parser.add_argument(
        "--track",
        choices=["handbook", "labelled", "adbench", "all", "clean_normal", "few_label"],
        default="all",
        help="all = handbook + adbench; labelled = the handbook protocol with labels; "
        "clean_normal = DTE's protocol on ADBench; few_label = ADGym's k labelled anomalies",
    )
    parser.add_argument(
        "--ks", default=",".join(map(str, FEW_LABEL_KS)),
        help="few_label: the numbers of labelled anomalies",
    )
    parser.add_argument(
        "--handbook-weeks", type=int, default=0,
        help="few_label: also the handbook's first N test weeks (its train week's frauds)",
    )
    parser.add_argument(
        "--gendetect-kinds", default="ensemble",
        help="few_label: gendetect kinds fitted once per dataset and seed, heads on top",
    )
    parser.add_argument(
        "--draws",
        type=int,
        default=5,
        help="labelled track: draws 0..N-1 of the 10%% labelled frauds",
    )
    parser.add_argument(
        "--draw-list", default=None,
        help="few_label: explicit comma-separated draws, overriding --draws (e.g. 3,4)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=5,
        help="handbook seeds 0..N-1 (ADBench always uses 0, 1, 2 unless --quick)",
    )
    parser.add_argument(
        "--seed-list",
        default=None,
        help="explicit comma-separated seeds for both tracks, overriding --seeds "
        "(e.g. 42: PyOD's default random_state, which the project's anchors used)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 seed, first handbook week with 10k training rows, "
        "3 ADBench files subsampled to 5k rows",
    )
    parser.add_argument("--detectors", default=None, help="comma-separated subset of detectors")
    parser.add_argument(
        "--datasets",
        default=None,
        help="ADBench: comma-separated subset of files (stems); with --merge the other "
        "datasets keep their earlier runs",
    )
    parser.add_argument(
        "--weeks",
        type=int,
        default=len(protocols.HANDBOOK_TEST_STARTS),
        help="handbook: the first N of the four test weeks (default all four)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep from the existing JSON in --out the tracks this run does not execute "
        "and the runs of detectors it does not run (separate jobs into one report)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.seeds < 1 or not 1 <= args.weeks <= len(protocols.HANDBOOK_TEST_STARTS):
        print("--seeds must be >= 1 and --weeks between 1 and 4", file=sys.stderr)
        return 2
    explicit = [int(v) for v in args.seed_list.split(",")] if args.seed_list else None
    only = set(args.detectors.split(",")) if args.detectors else None
    notes: list[str] = []
    if args.track == "labelled":
        specs = [s for s in peers.labelled_specs() if only is None or s.name in only]
    elif args.track == "few_label":
        specs = [s for s in peers.few_label_specs() if only is None or s.name in only]
    elif args.track == "clean_normal":
        specs, notes = peers.all_specs(only)
        specs = [s for s in specs if s.input == "features" and (
            s.name in peers.CLEAN_NORMAL_PEERS or s.family == "gendetect")]
    else:
        specs, notes = peers.all_specs(only)
    for note in notes:
        _log(note)

    results: dict[str, Any] = {
        "environment": environment(),
        "config": {
            "command": "python benchmarks/quality.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "track": args.track,
            "seeds": args.seeds,
            "seed_list": args.seed_list,
            "quick": args.quick,
            "detectors": [s.name for s in specs],
        },
        "notes": notes,
    }
    stem = "quality_quick" if args.quick else "quality"
    ran = {s.name for s in specs}
    kinds = [k for k in args.gendetect_kinds.split(",") if k]
    if args.track == "few_label":
        ran |= {f"gendetect_{k}" for k in kinds} | {f"gendetect_{k}_labels" for k in kinds}

    def write() -> tuple[Path, Path]:
        merged = _merge_previous(results, args.out / f"{stem}.json", ran) if args.merge else results
        return report.write_reports(merged, args.out, stem)

    handbook_seeds = explicit or ([0] if args.quick else list(range(args.seeds)))
    adbench_seeds = explicit or ([0] if args.quick else list(protocols.ADBENCH_SEEDS))
    started = time.perf_counter()

    if args.track in ("handbook", "all"):
        if protocols.handbook_path(args.data).exists():
            results["handbook"] = run_handbook(
                args.data, specs, handbook_seeds, args.quick, notes, args.weeks
            )
            results["handbook"]["sources"] = [
                _source(results, [s.name for s in specs if peers.HANDBOOK in s.tracks])
            ]
            write()  # keep progress of long runs
        else:
            notes.append(f"handbook track skipped: {protocols.handbook_path(args.data)} missing")
    if args.track == "labelled":
        if not protocols.handbook_path(args.data).exists():
            notes.append(f"labelled track skipped: {protocols.handbook_path(args.data)} missing")
        else:
            draws = [0] if args.quick else list(range(args.draws))
            results["labelled"] = run_labelled(
                args.data, specs, handbook_seeds, draws, args.quick, notes, args.weeks
            )
            results["labelled"]["sources"] = [_source(results, [s.name for s in specs])]
    if args.track in ("adbench", "all"):
        datasets = tuple(args.datasets.split(",")) if args.datasets else None
        results["adbench"] = run_adbench(
            args.data, specs, adbench_seeds, args.quick, notes, datasets
        )
        results["adbench"]["sources"] = [
            _source(results, [s.name for s in specs if peers.ADBENCH in s.tracks])
        ]

    datasets = tuple(args.datasets.split(",")) if args.datasets else None
    if args.track == "clean_normal":
        results["clean_normal"] = run_clean_normal(args.data, specs, adbench_seeds, notes, datasets)
        results["clean_normal"]["sources"] = [_source(results, [s.name for s in specs])]
    if args.track == "few_label":
        draws = [0] if args.quick else list(range(args.draws))
        if args.draw_list:
            draws = [int(d) for d in args.draw_list.split(",")]
        ks = [int(k) for k in args.ks.split(",")]
        results["few_label"] = run_few_label(
            args.data, specs, kinds, adbench_seeds, draws, ks, notes, datasets,
            args.handbook_weeks,
        )
        results["few_label"]["sources"] = [_source(results, sorted(ran))]

    results["total_seconds"] = time.perf_counter() - started
    md_path, json_path = write()
    _log(f"wrote {md_path} and {json_path} in {results['total_seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
