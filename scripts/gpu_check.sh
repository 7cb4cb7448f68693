#!/usr/bin/env bash
# One short, prepared check of fisherlab on a GPU: the three benchmarks in benchmarks/,
# one TL-DMI fine-tune and one GMI attack, each in float32 and with --amp bf16, then a
# markdown table in $OUT/gpu_table.md (and every log and JSON beside it).
#
#   scripts/gpu_check.sh                   # on a CUDA machine: under 8 minutes on one H200
#   scripts/gpu_check.sh --device cpu --dry  # anywhere: the same steps at toy size, to test it
#
# OUT defaults to a new temporary folder; PYTHON to .venv/bin/python (else python3).
# Run it from the repository root; it uses the checkout it is in, whatever is installed.
set -euo pipefail

DEVICE=cuda
DRY=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="$2"; shift 2 ;;
        --dry) DRY=1; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT/runs"
RUNS="$OUT/runs"
FL=("$PYTHON" -m fisherlab)
AMP=(--amp bf16)
if [ "$DEVICE" = cpu ]; then AMP=(); fi  # --amp is CUDA only

if [ "$DRY" = 1 ]; then  # toy sizes: checks the script, measures nothing
    REPEATS=1; ONLY=(--only target_cnn --skip-loop --no-memory); MEM=(--no-memory); TT=()
    PRE=(--epochs 1 --max-train-samples 256); FT=(--epochs 1 --max-train-samples 128)
    GAN=(--epochs 1 --max-train-samples 256); EVAL=(--epochs 1 --max-train-samples 256)
    ATT=(--iterations 3 --restarts 1 --per-class 2 --fisher-every 1); OVER=(--iterations 2 --per-class 1)
else
    REPEATS=3; ONLY=(); MEM=(); TT=(--arch vgg16_bn_small --image-size 64 --batch 64)
    PRE=(--epochs 1); FT=(--epochs 5)
    GAN=(--epochs 30); EVAL=(--epochs 10 --lr 0.05)
    ATT=(--iterations 600 --restarts 5 --per-class 5 --fisher-every 10); OVER=(--iterations 50)
fi

step() {  # step NAME COMMAND...: run it, log it, keep its wall time
    local name="$1"; shift
    echo "== $name: $*" | tee -a "$OUT/log.txt"
    local start end
    start=$(date +%s.%N)
    "$@" > "$OUT/$name.out" 2>&1 || { cat "$OUT/$name.out"; echo "gpu_check.sh: $name failed" >&2; exit 1; }
    end=$(date +%s.%N)
    awk -v n="$name" -v a="$start" -v b="$end" 'BEGIN { printf "%s %.2f\n", n, b - a }' \
        >> "$OUT/seconds.txt"
    tail -n 3 "$OUT/$name.out" | tee -a "$OUT/log.txt"
}

: > "$OUT/seconds.txt"
"$PYTHON" - "$DEVICE" > "$OUT/environment.txt" <<'EOF'
import platform, sys, time, torch
device = sys.argv[1]
name = torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu"
print(f"{time.strftime('%Y-%m-%d')}, {name}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
cat "$OUT/environment.txt"

# 1. the benchmarks
step fisher_speed "$PYTHON" benchmarks/fisher_speed.py --device "$DEVICE" --repeats "$REPEATS" \
    "${ONLY[@]}" --json "$OUT/fisher_speed.json"
step train_throughput "$PYTHON" benchmarks/train_throughput.py --device "$DEVICE" \
    --repeats "$REPEATS" "${TT[@]}" --json "$OUT/train_throughput.json"

# 2. one fine-tune (TL-DMI, boundary 4), float32 and bf16, from one pretraining (on
#    Fashion-MNIST when Debian's dataset-fashion-mnist is installed, else the public digits)
PRE_DATA=mnist5k:5-9
if [ "$DRY" = 0 ] && "${FL[@]}" data fashion > /dev/null 2>&1; then PRE_DATA=fashion; fi
step pretrain "${FL[@]}" train --arch target_cnn --data "$PRE_DATA" "${PRE[@]}" \
    --device "$DEVICE" --quiet --out "$RUNS/pre.pt"
step finetune "${FL[@]}" train --init "$RUNS/pre.pt" --data mnist5k:0-4 --freeze-boundary 4 \
    "${FT[@]}" --device "$DEVICE" --quiet --out "$RUNS/ft.pt"
if [ ${#AMP[@]} -gt 0 ]; then
    step finetune_amp "${FL[@]}" train --init "$RUNS/pre.pt" --data mnist5k:0-4 \
        --freeze-boundary 4 "${FT[@]}" --device "$DEVICE" "${AMP[@]}" --quiet --out "$RUNS/ft_amp.pt"
fi

# 3. one GMI attack on it (prior and evaluator first), float32 and bf16
step gan "${FL[@]}" train-gan --data mnist5k:5-9 --kind gmi "${GAN[@]}" --device "$DEVICE" \
    --quiet --out "$RUNS/gan.pt"
step evaluator "${FL[@]}" train --arch eval_cnn --data mnist5k:0-4 "${EVAL[@]}" --seed 1 \
    --device "$DEVICE" --quiet --out "$RUNS/eval.pt"
step attack "${FL[@]}" attack "$RUNS/ft.pt" --generator "$RUNS/gan.pt" --eval-model "$RUNS/eval.pt" \
    --classes 0-4 "${ATT[@]}" --device "$DEVICE" --quiet --out "$RUNS/attack"
if [ ${#AMP[@]} -gt 0 ]; then
    step attack_amp "${FL[@]}" attack "$RUNS/ft.pt" --generator "$RUNS/gan.pt" \
        --eval-model "$RUNS/eval.pt" --classes 0-4 "${ATT[@]}" --device "$DEVICE" "${AMP[@]}" \
        --quiet --out "$RUNS/attack_amp"
fi
step attack_overhead "$PYTHON" benchmarks/attack_overhead.py "$RUNS/ft.pt" "$RUNS/gan.pt" \
    --device "$DEVICE" --repeats "$REPEATS" "${OVER[@]}" "${MEM[@]}" --json "$OUT/attack_overhead.json"

# 4. the table
"$PYTHON" - "$OUT" "$DRY" <<'EOF'
import json, math, sys
from pathlib import Path

out, dry = Path(sys.argv[1]), sys.argv[2] == "1"
runs = out / "runs"
seconds = dict(line.split() for line in (out / "seconds.txt").read_text().splitlines())
lines = [f"GPU check ({(out / 'environment.txt').read_text().strip()})"
         + (" -- DRY RUN at toy sizes, the numbers mean nothing" if dry else ""), ""]

def mib(v):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0f} MiB"

speed = json.loads((out / "fisher_speed.json").read_text())
methods = list(next(iter(speed["cases"].values()))["ratio"])
lines += ["Fisher engine (`benchmarks/fisher_speed.py`), time relative to one plain "
          "forward+backward (peak memory growth):", "",
          "| model, batch | " + " | ".join(methods) + " |",
          "| --- |" + " --- |" * len(methods)]
for arch, case in speed["cases"].items():
    cells = []
    for m in methods:
        if m not in case["ratio"]:
            cells.append("failed")
            continue
        extra = f" ({case['seconds'][m] * 1e3:.1f} ms" if m == "plain" else " ("
        cells.append(f"{case['ratio'][m]:.2f}{extra}{', ' if m == 'plain' else ''}"
                     f"{mib(case['peak_mib'].get(m))})")
    lines.append(f"| {arch}, {case['image_size']}x{case['image_size']}, {case['batch']} | "
                 + " | ".join(cells) + " |")

tp = json.loads((out / "train_throughput.json").read_text())
base = tp["seconds"][0]
lines += ["", f"Training step by freeze boundary (`benchmarks/train_throughput.py`, {tp['arch']}, "
          f"batch {tp['batch']}): " + ", ".join(
              f"b={b} {t * 1e3:.1f} ms ({t / base:.2f})" for b, t in enumerate(tp["seconds"])), ""]

lines += ["| run | device, precision | wall time | result |", "| --- | --- | --- | --- |"]
for name, ckpt in (("pretrain", "pre"), ("finetune", "ft"), ("finetune_amp", "ft_amp"),
                   ("evaluator", "eval")):
    run_json = runs / f"{ckpt}.run.json"
    if not run_json.is_file():
        continue
    record = json.loads(run_json.read_text())
    amp = record["config"].get("amp") or "float32"
    lines.append(f"| {name} ({record['config']['data']}, {len(record['trainable_layers'])} "
                 f"trained layers) | {record['device']}, {amp} | {float(seconds[name]):.1f} s "
                 f"(training {record['seconds']:.1f} s) | natural accuracy "
                 f"{record['final_natural_accuracy']:.3f} |")
lines.append(f"| GMI prior (train-gan) | | {float(seconds['gan']):.1f} s | |")
for name in ("attack", "attack_amp"):
    summary_file = runs / name / "summary.json"
    if not summary_file.is_file():
        continue
    s = json.loads(summary_file.read_text())
    c = s["config"]
    lines.append(f"| {name} (GMI, {len(c['classes'])}x{c['per_class']} latents, "
                 f"{c['iterations']} it x {c['restarts']} restarts, Fisher every "
                 f"{c['fisher_every']}) | {s['device']}, {c.get('amp') or 'float32'} | "
                 f"{float(seconds[name]):.1f} s | top-1 {s['attack_accuracy_top1']:.2f}, "
                 f"KNN {s['knn_distance']:.2f}, FID {s['fid']:.1f} |")
over = json.loads((out / "attack_overhead.json").read_text())
lines += ["", f"Recording the Fisher at every GMI iteration (`benchmarks/attack_overhead.py`, "
          f"{over['latents']} latents, {over['iterations']} iterations): "
          f"{over['seconds']['plain']:.2f} s without, {over['seconds']['recorded']:.2f} s with, "
          f"ratio {over['ratio']:.2f}; peak memory {mib(over['peak_mib']['plain'])} / "
          f"{mib(over['peak_mib']['recorded'])}."]
(out / "gpu_table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
echo "gpu_check.sh: wrote $OUT/gpu_table.md"
