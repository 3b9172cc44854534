"""Compare settings of our LSTM on the accuracy benchmark's data, over several seeds.

One line per setting: the LSTM's backtest MASE for each seed and their mean, beside
seasonal naive (the same for every seed). A single seed misleads: on the 47-series
sample two seeds of one setting differed by up to 0.07 MASE. Each setting is a JSON
object of config overrides, applied on top of the defaults (or ``--config``).

    .venv-bench/bin/python bench/tune.py --dataset sample \\
        '{}' '{"train": {"lr": 0.003}}' '{"model": {"num_layers": 2}}' --seeds 0 1 2 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from accuracy import DATASETS, evaluate

from lstm_pipeline.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="+", help="JSON config overrides, one setting each ('{}': the defaults)")
    parser.add_argument("--dataset", default="sample", choices=sorted(DATASETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--config", type=Path, help="YAML config the settings apply to (default: the defaults)")
    args = parser.parse_args()
    frame = DATASETS[args.dataset]()
    print(f"{args.dataset}: {frame['unique_id'].nunique()} series; seeds {args.seeds}; LSTM MASE per seed, mean")
    for setting in args.settings:
        overrides = json.loads(setting)
        scores, started = [], time.perf_counter()
        for seed in args.seeds:
            merged = {**overrides, "train": {**overrides.get("train", {}), "seed": seed}}
            table = evaluate(frame, load_config(args.config, overrides=merged), comparators=False)
            scores.append(float(table.loc["lstm", "mase"]))
        snaive = float(table.loc["seasonal_naive", "mase"])
        print(f"{setting:<50} {' / '.join(f'{m:.3f}' for m in scores)}  mean {sum(scores) / len(scores):.3f}"
              f"  (seasonal naive {snaive:.3f}; {time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
