"""Where the auxiliary module's time and memory go: `torch.profiler` top ops, and a per-component split.

One forward + backward of `model.autoregressive_module` (CPU default widths) at T=16, P=729, profiled after two
warm-up steps. Prints the top ops by self CPU time and by allocated memory, and a split measured by switching parts
off: teacher forward alone, predictor without the LLM cross-attention, predictor with `num_hist=1`.

    python benchmarks/profile_aux.py             # ~1-2 min
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle workers sleep instead of spinning (see measurement.py, 'Timing on a shared machine').
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import measurement  # noqa: E402
import model_specs  # noqa: E402
import report  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--grid", type=int, default=27)
    parser.add_argument("--rows", type=int, default=15)
    _common.add_common_arguments(parser, out="profile_aux")
    args = parser.parse_args(argv)

    spec = _common.start(args)
    import bench_scaling as BS
    from llava_next_ar import LlavaNextARForConditionalGeneration
    from torch.profiler import ProfilerActivity, profile

    lines = []

    def emit(text=""):
        print(text)
        lines.append(text)

    def build(**overrides):
        torch.manual_seed(0)
        s = dict(spec)
        s["autoregressive_config"] = {**spec["autoregressive_config"], **overrides}
        return LlavaNextARForConditionalGeneration(model_specs.build_config(s, args.grid)).train()

    model = build()
    module = model.autoregressive_module
    inputs = BS.make_inputs(model, spec, args.frames)
    for _ in range(2):
        BS.module_step(module, inputs)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        BS.module_step(module, inputs)
    averages = prof.key_averages()
    width = model.config.autoregressive_config["predictor_hidden_size"]
    emit(f"# auxiliary module fwd+bwd, T={args.frames}, P={args.grid ** 2}, predictor width {width}")
    emit("\n## top ops by self CPU time\n")
    emit(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    emit("\n## top ops by self allocated CPU memory\n")
    emit(averages.table(sort_by="self_cpu_memory_usage", row_limit=args.rows))

    frames, hidden, frame_indices, attention_mask, _ = inputs
    split = []

    def record(name, fn, repeats=3):
        fn()
        xs = [measurement.timed(fn) for _ in range(repeats)]
        peak_mib = measurement.median([x[1] for x in xs])
        split.append({"part": name, "seconds": min(x[0] for x in xs), "peak_mib": peak_mib})

    record("whole module (teacher + predictor fwd+bwd)", lambda: BS.module_step(module, inputs))
    with torch.no_grad():
        record("teacher forward only", lambda: module.encode_frames(frames))
        features = module.encode_frames(frames)

    def predictor_only(m):
        m.zero_grad(set_to_none=True)
        hidden.grad = None
        out = m(frames, hidden_states=hidden, hidden_states_frame_indices=frame_indices,
                attention_mask=attention_mask, teacher_features=features)
        out.loss.backward()

    record("predictor fwd+bwd (teacher features given)", lambda: predictor_only(module))
    no_cross = build(fuse_llm_hidden_states=False).autoregressive_module
    record("  without LLM cross-attention", lambda: predictor_only(no_cross))
    hist1 = build(num_hist=1).autoregressive_module
    record("  with num_hist=1 (self-attention within the frame)", lambda: predictor_only(hist1))
    emit("\n## split (min of 3 s, median peak MiB)\n")
    emit(report.table(split, [("part", "part", ""), ("seconds", "s", ".2f"), ("peak_mib", "peak MiB", ".0f")]))
    RESULTS = report.RESULTS
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.txt").write_text("\n".join(lines) + "\n")
    payload = {"benchmark": "profile_aux", "machine": measurement.machine(), "split": split, "args": vars(args)}
    report.write_json(f"{args.out}.json", payload)
    print(f"\nwrote {RESULTS / (args.out + '.txt')}")


if __name__ == "__main__":
    main()
