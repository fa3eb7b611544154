#!/usr/bin/env bash
# Prepare a fresh RunPod (or any CUDA) machine for train.py and prove it works, without asking anything.
#
#   bash setup_runpod.sh                                   # check GPU, install, check data, dry run, smoke run
#   bash setup_runpod.sh --data_dir /workspace/M4_cleaned/data --reddit_file /workspace/reddit_training_60k.jsonl
#   bash setup_runpod.sh --wandb --no_smoke                # W&B login from $WANDB_API_KEY, skip the smoke run
#   bash setup_runpod.sh ... -- --max_length 256           # flags after `--` go to both train.py runs
#   bash setup_runpod.sh --allow_cpu                       # rehearse every step on a laptop, without a GPU
#
# Steps: 1 nvidia-smi, 2 data files, 3 pip install (keeps the pod's CUDA torch), 4 torch sees the GPU / bf16,
# 5 optional W&B login, 6 train.py --dry_run, 7 a short smoke training. Stops at the first problem with a
# message and a non-zero exit code. Safe to re-run: installs are skipped when satisfied and the two runs
# overwrite their own output directories under --output_dir.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bash setup_runpod.sh [options] [-- extra train.py flags]

Options (each also settable by the environment variable in brackets):
  --data_dir DIR        M4 directory of <domain>_<generator>.jsonl [DATA_DIR] (default: M4_cleaned/data)
  --reddit_file FILE    Reddit training file, or 'none' [REDDIT_FILE] (default: reddit_training_60k.jsonl)
  --model NAME          hub id or local model directory [MODEL] (default: roberta-base)
  --output_dir DIR      where the dry and smoke runs write [OUTPUT_DIR] (default: outputs/setup_check)
  --smoke_samples N     training documents of the smoke run [SMOKE_SAMPLES] (default: 200; 20 on CPU)
  --no_smoke            skip the smoke training [SMOKE=0]
  --skip_install        do not pip install anything [SKIP_INSTALL=1]
  --wandb               log in to Weights & Biases with $WANDB_API_KEY [WANDB_LOGIN=1]
  --allow_cpu           rehearse on a machine without a GPU: warn instead of failing when there is no
                        nvidia-smi or torch sees no CUDA GPU; the smoke run is then 2 optimizer steps [ALLOW_CPU=1]
  --python PATH         Python interpreter [PYTHON] (default: python3)
  -h, --help            show this help
Exit codes: 0 ready; 1 a check failed (message says which); 2 bad option.
EOF
}

DATA_DIR=${DATA_DIR:-M4_cleaned/data}
REDDIT_FILE=${REDDIT_FILE:-reddit_training_60k.jsonl}
MODEL=${MODEL:-roberta-base}
OUTPUT_DIR=${OUTPUT_DIR:-outputs/setup_check}
SMOKE_SAMPLES=${SMOKE_SAMPLES:-}
SMOKE=${SMOKE:-1}
SKIP_INSTALL=${SKIP_INSTALL:-0}
WANDB_LOGIN=${WANDB_LOGIN:-0}
ALLOW_CPU=${ALLOW_CPU:-0}
PYTHON=${PYTHON:-python3}
EXTRA_ARGS=()

die() {
    echo "setup_runpod.sh: error: $*" >&2
    exit 1
}

need_value() {
    [[ $# -ge 2 && -n $2 ]] || { echo "setup_runpod.sh: $1 needs a value (see --help)" >&2; exit 2; }
}

while [[ $# -gt 0 ]]; do
    case $1 in
        --data_dir) need_value "$@"; DATA_DIR=$2; shift 2 ;;
        --reddit_file) need_value "$@"; REDDIT_FILE=$2; shift 2 ;;
        --model) need_value "$@"; MODEL=$2; shift 2 ;;
        --output_dir) need_value "$@"; OUTPUT_DIR=$2; shift 2 ;;
        --smoke_samples) need_value "$@"; SMOKE_SAMPLES=$2; shift 2 ;;
        --no_smoke) SMOKE=0; shift ;;
        --skip_install) SKIP_INSTALL=1; shift ;;
        --wandb) WANDB_LOGIN=1; shift ;;
        --allow_cpu) ALLOW_CPU=1; shift ;;
        --python) need_value "$@"; PYTHON=$2; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        --) shift; EXTRA_ARGS=("$@"); break ;;
        *) echo "setup_runpod.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

[[ -z $SMOKE_SAMPLES || $SMOKE_SAMPLES =~ ^[1-9][0-9]*$ ]] || { echo "setup_runpod.sh: --smoke_samples must be a positive integer" >&2; exit 2; }

# No prompts anywhere: pip, apt and the hub client must never wait for a TTY.
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
# Paths given relative to where the script was called from stay valid after the cd to the repository.
absolute() { if [[ $1 == /* ]]; then echo "$1"; else echo "$PWD/$1"; fi; }
DATA_DIR=$(absolute "$DATA_DIR")
OUTPUT_DIR=$(absolute "$OUTPUT_DIR")
if [[ ${REDDIT_FILE,,} != none ]]; then REDDIT_FILE=$(absolute "$REDDIT_FILE"); fi
if [[ -e $MODEL ]]; then MODEL=$(absolute "$MODEL"); fi
cd "$(dirname "${BASH_SOURCE[0]}")"

step() { echo; echo "==> [$1/7] $2"; }

step 1 "GPU visible to the driver (nvidia-smi)"
if ! command -v nvidia-smi >/dev/null; then
    [[ $ALLOW_CPU == 1 ]] || die "nvidia-smi not found: this pod has no NVIDIA driver (pick a GPU pod template)"
    echo "warning: nvidia-smi not found; rehearsing on CPU (--allow_cpu)"
elif ! nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader </dev/null; then
    [[ $ALLOW_CPU == 1 ]] || die "nvidia-smi failed: the GPU is not usable (restart the pod)"
    echo "warning: nvidia-smi failed; rehearsing on CPU (--allow_cpu)"
fi

step 2 "data files"
[[ -d $DATA_DIR ]] || die "data directory not found: $DATA_DIR (set --data_dir; prepare it with prepare_data.py m4)"
n_files=$(find "$DATA_DIR" -maxdepth 1 -name '*.jsonl' -size +0c | wc -l)
[[ $n_files -gt 0 ]] || die "no non-empty .jsonl file in $DATA_DIR"
echo "$DATA_DIR: $n_files non-empty .jsonl files"
if [[ ${REDDIT_FILE,,} == none ]]; then
    echo "Reddit file: none (training on M4 only)"
else
    [[ -f $REDDIT_FILE ]] || die "Reddit file not found: $REDDIT_FILE (set --reddit_file, or --reddit_file none)"
    [[ -s $REDDIT_FILE ]] || die "Reddit file is empty: $REDDIT_FILE"
    echo "$REDDIT_FILE: $(wc -l <"$REDDIT_FILE") lines"
fi

NO_TORCH="$PYTHON cannot import torch: use a PyTorch pod template (or install a CUDA build of torch first)"

step 3 "Python packages"
if [[ $SKIP_INSTALL == 1 ]]; then
    echo "skipped (--skip_install)"
else
    "$PYTHON" -c "import torch" </dev/null 2>/dev/null || die "$NO_TORCH"
    # Pin the pod's own torch build so that requirements.txt (torch>=2.4) can never swap it for another one.
    torch_version=$("$PYTHON" -c "import torch; print(torch.__version__)" </dev/null)
    constraints=$(mktemp)
    trap 'rm -f "$constraints"' EXIT
    echo "torch==$torch_version" >"$constraints"
    "$PYTHON" -m pip install -q -r requirements.txt -c "$constraints" </dev/null \
        || die "pip install -r requirements.txt failed (torch pinned to $torch_version)"
    if [[ $WANDB_LOGIN == 1 ]]; then
        "$PYTHON" -m pip install -q wandb -c "$constraints" </dev/null || die "pip install wandb failed"
    fi
    echo "requirements installed; torch kept at $torch_version"
fi

step 4 "torch sees the GPU, precision"
gpu_status=0
on_cpu=0
"$PYTHON" - <<'EOF' || gpu_status=$?
try:
    import torch
except ImportError:
    raise SystemExit(3) from None

print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}")
if not torch.cuda.is_available():
    raise SystemExit(1)
for index in range(torch.cuda.device_count()):
    print(f"cuda:{index} {torch.cuda.get_device_name(index)}")
print("bf16 supported: train.py uses bf16" if torch.cuda.is_bf16_supported() else "no bf16: train.py uses fp16")
EOF
if [[ $gpu_status == 3 ]]; then
    die "$NO_TORCH"
elif [[ $gpu_status != 0 && $ALLOW_CPU == 1 ]]; then
    echo "warning: torch sees no CUDA GPU; continuing on CPU (--allow_cpu)"
    on_cpu=1
elif [[ $gpu_status != 0 ]]; then
    die "torch sees no CUDA GPU (CPU-only torch build, or driver/CUDA mismatch); --allow_cpu to continue anyway"
fi

step 5 "Weights & Biases"
if [[ $WANDB_LOGIN == 1 ]]; then
    [[ -n ${WANDB_API_KEY:-} ]] || die "--wandb needs WANDB_API_KEY in the environment (no interactive login)"
    "$PYTHON" -m wandb login "$WANDB_API_KEY" </dev/null >/dev/null || die "wandb login failed (check WANDB_API_KEY)"
    echo "logged in; add --report_to wandb to train.py"
else
    echo "skipped (use --wandb with WANDB_API_KEY set)"
fi

step 6 "dry run: load, split and chunk the data"
"$PYTHON" train.py --dry_run --overwrite_output_dir --model "$MODEL" --data_dir "$DATA_DIR" \
    --reddit_file "$REDDIT_FILE" --use_class_weights --stratified_split \
    --output_dir "$OUTPUT_DIR/dry_run" "${EXTRA_ARGS[@]}" </dev/null \
    || die "the dry run failed (message above); fix the data or flags before training"

step 7 "smoke training"
smoke_flags=(--epochs 1)
if [[ $on_cpu == 1 ]]; then
    # A rehearsal: every stage of a training run (steps, evaluation, saving, reports), in minutes on a CPU.
    smoke_flags=(--max_steps 2)
    SMOKE_SAMPLES=${SMOKE_SAMPLES:-20}
fi
SMOKE_SAMPLES=${SMOKE_SAMPLES:-200}
if [[ $SMOKE == 1 ]]; then
    "$PYTHON" train.py --overwrite_output_dir --model "$MODEL" --data_dir "$DATA_DIR" \
        --reddit_file "$REDDIT_FILE" --use_class_weights --stratified_split \
        --max_train_samples "$SMOKE_SAMPLES" --max_val_samples "$SMOKE_SAMPLES" "${smoke_flags[@]}" \
        --output_dir "$OUTPUT_DIR/smoke" "${EXTRA_ARGS[@]}" </dev/null \
        || die "the smoke training failed (message above)"
    [[ -s $OUTPUT_DIR/smoke/metrics.json ]] || die "the smoke training wrote no $OUTPUT_DIR/smoke/metrics.json"
    echo "smoke run finished: $OUTPUT_DIR/smoke/metrics.json"
else
    echo "skipped (--no_smoke)"
fi

echo
echo "Ready. Recipes for real runs: bash example_commands.sh list"
