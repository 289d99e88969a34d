"""
The processor's cost on one 16-frame 384x384 clip, as a ratio to the stock `LlavaNextVideoProcessor` on the same clip
in the same run (calls interleaved, so both see the same machine load):

- `all`: every frame to the LLM (`video_frames` is `pixel_values_videos`);
- `fast_slow`: 8 fast (stride 1) + 4 slow (stride 2) frames, concat: 12 distinct frames preprocessed, 12 gathered.

For each output size (`--sizes`, the vision tower's `image_size`: 32 for the tiny model, 384 for SigLIP-384) the
median seconds per call and `ours / stock`. Run it against another checkout to compare versions:

    python benchmarks/bench_processor.py                   # writes benchmarks/results/bench_processor.json
    PYTHONPATH=/other/checkout python benchmarks/bench_processor.py --out /tmp/other.json
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from transformers import LlavaNextVideoProcessor, LlavaNextVideoVideoProcessor  # noqa: E402

from llava_next_ar.processing_llava_next_ar import LlavaNextARProcessor  # noqa: E402
from llava_next_ar.tiny_models import tiny_config, vocab_from_words, word_level_tokenizer  # noqa: E402


CASES = {"all": {}, "fast_slow": {"use_fast_slow_frames": True, "num_fast": 8, "num_slow": 4, "slow_stride": 2}}
PROMPT = "user : <video> what happens ?"
VOCAB = vocab_from_words(PROMPT.split())


def tiny_tokenizer():
    return word_level_tokenizer(VOCAB)


def measure(sizes: list[int], repeats: int, threads: int) -> list[dict]:
    torch.set_num_threads(threads)
    clip = torch.randint(0, 256, (16, 384, 384, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    rows = []
    for size in sizes:
        config = tiny_config(len(VOCAB), VOCAB["<video>"], VOCAB["<image>"], image_size=size)
        stock = LlavaNextVideoProcessor(
            video_processor=LlavaNextVideoVideoProcessor(
                size={"shortest_edge": size}, crop_size={"height": size, "width": size}
            ),
            image_processor=LlavaNextARProcessor.from_model_config(config, tiny_tokenizer()).image_processor,
            tokenizer=tiny_tokenizer(),
            patch_size=8,
            vision_feature_select_strategy="default",
        )
        for case, settings in CASES.items():
            ours = LlavaNextARProcessor.from_model_config(config, tiny_tokenizer(), **settings)
            times = {"ours": [], "stock": []}
            for _ in range(repeats + 1):  # the first call of each warms up and is dropped
                for name, processor in (("ours", ours), ("stock", stock)):
                    start = time.perf_counter()
                    processor(text=PROMPT, videos=clip, return_tensors="pt")
                    times[name].append(time.perf_counter() - start)
            ours_s, stock_s = statistics.median(times["ours"][1:]), statistics.median(times["stock"][1:])
            rows.append({"size": size, "case": case, "ours_s": ours_s, "stock_s": stock_s, "ratio": ours_s / stock_s})
            print(f"{size:>4}px {case:<9} ours {ours_s * 1e3:7.1f} ms  stock {stock_s * 1e3:7.1f} ms  "
                  f"ours/stock {ours_s / stock_s:.2f}")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 384], help="output frame sizes (image_size)")
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per processor and case")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_processor.json")
    args = parser.parse_args(argv)
    rows = measure(args.sizes, args.repeats, args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"clip": [16, 384, 384, 3], "threads": args.threads, "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
