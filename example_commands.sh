#!/usr/bin/env bash
# Named training recipes: `bash example_commands.sh list`, `bash example_commands.sh <recipe> [extra flags]`;
# `--print` anywhere on the line shows the command instead of running it.
# Paths come from the environment: DATA_DIR, REDDIT_FILE, OUTPUT_ROOT, NGPU, PYTHON, ACCELERATE_CONFIG,
# LAPTOP_MODEL, RAW_M4_DIR, REDDIT_DUMP, HOLDOUT_DOMAINS and HOLDOUT_GENERATORS (the items of the two sweeps);
# relative ones are taken from the directory you call the script from. The commands run in the repository, so
# relative paths in extra flags are the repository's.
# Extra flags after the recipe name are appended, so they override the recipe's (argparse keeps the last); a sweep
# appends them to each of its runs.
set -euo pipefail

DATA_DIR=${DATA_DIR:-M4_cleaned/data}
REDDIT_FILE=${REDDIT_FILE:-reddit_training_60k.jsonl}
OUTPUT_ROOT=${OUTPUT_ROOT:-outputs}
PYTHON=${PYTHON:-python3}
RAW_M4_DIR=${RAW_M4_DIR:-M4/data}
REDDIT_DUMP=${REDDIT_DUMP:-reddit_dump.csv}
# A small encoder for CPU runs (22M parameters); any hub id or local model directory works.
LAPTOP_MODEL=${LAPTOP_MODEL:-sentence-transformers/all-MiniLM-L6-v2}
# Paths given relative to where the script was called from stay valid after the cd to the repository.
absolute() { if [[ $1 == /* ]]; then echo "$1"; else echo "$PWD/$1"; fi; }
DATA_DIR=$(absolute "$DATA_DIR")
OUTPUT_ROOT=$(absolute "$OUTPUT_ROOT")
RAW_M4_DIR=$(absolute "$RAW_M4_DIR")
REDDIT_DUMP=$(absolute "$REDDIT_DUMP")
if [[ ${REDDIT_FILE,,} != none ]]; then REDDIT_FILE=$(absolute "$REDDIT_FILE"); fi
if [[ -e $LAPTOP_MODEL ]]; then LAPTOP_MODEL=$(absolute "$LAPTOP_MODEL"); fi  # else a hub id
if [[ -n ${ACCELERATE_CONFIG:-} ]]; then ACCELERATE_CONFIG=$(absolute "$ACCELERATE_CONFIG"); fi
if [[ $PYTHON == */* ]]; then PYTHON=$(absolute "$PYTHON"); fi  # e.g. .venv/bin/python; a bare name is looked up
HOLDOUT_DOMAINS=${HOLDOUT_DOMAINS:-arxiv wikipedia reddit wikihow peerread}
HOLDOUT_GENERATORS=${HOLDOUT_GENERATORS:-chatGPT davinci cohere dolly flant5}

RECIPES=(
    "base:recommended run: roberta-base, grouped stratified split, class weights"
    "roberta-large:roberta-large with gradient accumulation (global batch 32 per GPU)"
    "holdout:generator hold-out: validate on flant5, never trained on"
    "dry-run:load, split and chunk only; writes data_report.json and splits.jsonl"
    "resume:continue the base run from its newest checkpoint"
    "multi-gpu:the base run on NGPU GPUs of this machine with torchrun (DDP)"
    "multi-gpu-accelerate:the base run with accelerate launch (ACCELERATE_CONFIG for FSDP/DeepSpeed)"
    "prepare-m4:clean a raw M4 directory (RAW_M4_DIR) into DATA_DIR"
    "prepare-reddit:turn a Reddit dump (REDDIT_DUMP) into REDDIT_FILE (60k posts before 2022-11-30)"
    "laptop:minutes on a laptop CPU: small model (LAPTOP_MODEL), 100 steps, 200 validation documents"
    "demo:offline end-to-end run on a generated sample with a tiny model"
    "robust:the base run trained also on attacked copies, scored under every RAID attack without a model"
    "leave-one-domain-out:one run per domain of HOLDOUT_DOMAINS held out for validation, then one summary table"
    "leave-one-generator-out:one run per generator of HOLDOUT_GENERATORS held out, then one summary table"
)

usage() {
    echo "Usage: bash example_commands.sh <recipe> [extra flags] [--print] | list | --help"
    echo "Environment: DATA_DIR=$DATA_DIR REDDIT_FILE=$REDDIT_FILE OUTPUT_ROOT=$OUTPUT_ROOT PYTHON=$PYTHON"
    echo "Sweeps: HOLDOUT_DOMAINS='$HOLDOUT_DOMAINS' HOLDOUT_GENERATORS='$HOLDOUT_GENERATORS'"
}

list_recipes() {
    local entry
    for entry in "${RECIPES[@]}"; do
        printf '  %-24s %s\n' "${entry%%:*}" "${entry#*:}"
    done
}

gpu_count() {
    if [[ -n ${NGPU:-} ]]; then
        echo "$NGPU"
    elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
        nvidia-smi -L | wc -l
    else
        echo 2
    fi
}

# Sets the array `cmd` for the recipe named $1.
build_command() {
    local data=(--data_dir "$DATA_DIR" --reddit_file "$REDDIT_FILE")
    local base=(train.py --model roberta-base "${data[@]}" --use_class_weights --stratified_split
        --output_dir "$OUTPUT_ROOT/roberta-base")
    case $1 in
        base) cmd=("$PYTHON" "${base[@]}") ;;
        roberta-large)
            cmd=("$PYTHON" train.py --model roberta-large "${data[@]}" --use_class_weights --stratified_split
                --lr 1e-5 --batch_size 8 --gradient_accumulation_steps 4 --output_dir "$OUTPUT_ROOT/roberta-large") ;;
        holdout)
            cmd=("$PYTHON" train.py --model roberta-base "${data[@]}" --use_class_weights --val_generator flant5
                --output_dir "$OUTPUT_ROOT/holdout-flant5") ;;
        robust)
            # Canonicalisation (on by default) undoes homoglyphs and zero-width spaces, and the whitespace and digit
            # rules undo those attacks: the copies teach the edits that survive normalisation.
            cmd=("$PYTHON" train.py --model roberta-base "${data[@]}" --use_class_weights --stratified_split
                --augment_attacks misspelling article_deletion alternative_spelling upper_lower --augment_rate 0.2
                --test_attacks all --output_dir "$OUTPUT_ROOT/roberta-base-robust") ;;
        dry-run)
            cmd=("$PYTHON" train.py --dry_run --model roberta-base "${data[@]}" --use_class_weights --stratified_split
                --output_dir "$OUTPUT_ROOT/dry-run") ;;
        laptop)
            # The samples cap documents, and a document can make many windows, so --max_steps bounds the training
            # (100 steps of 16 windows). The Trainer's own chunk-level evaluation and checkpoints are skipped: the
            # validation documents are scored once, at the end.
            cmd=("$PYTHON" train.py --model "$LAPTOP_MODEL" "${data[@]}" --use_class_weights --stratified_split
                --max_train_samples 400 --max_val_samples 200 --max_length 128 --chunk_overlap 16 --max_steps 100
                --lr 1e-4 --logging_steps 10 --eval_strategy no --save_strategy no --output_dir "$OUTPUT_ROOT/laptop") ;;
        resume) cmd=("$PYTHON" "${base[@]}" --resume_from_checkpoint auto) ;;
        multi-gpu) cmd=(torchrun --standalone --nproc_per_node "$(gpu_count)" "${base[@]}") ;;
        multi-gpu-accelerate)
            cmd=(accelerate launch --num_processes "$(gpu_count)")
            if [[ -n ${ACCELERATE_CONFIG:-} ]]; then cmd+=(--config_file "$ACCELERATE_CONFIG"); fi
            cmd+=("${base[@]}") ;;
        prepare-m4)
            cmd=("$PYTHON" prepare_data.py m4 --input_dir "$RAW_M4_DIR" --output_dir "$DATA_DIR") ;;
        prepare-reddit)
            cmd=("$PYTHON" prepare_data.py reddit --input "$REDDIT_DUMP" --output "$REDDIT_FILE"
                --cutoff_date 2022-11-30 --sample_size 60000 --seed 42) ;;
        demo) cmd=("$PYTHON" train.py --demo) ;;
        *)
            echo "example_commands.sh: unknown recipe '$1'; recipes:" >&2
            list_recipes >&2
            exit 2 ;;
    esac
}

# Prints the command in "$@" (--print) or runs it.
run_or_print() {
    if [[ $print_only == 1 ]]; then
        printf '%q ' "$@"
        echo
    else
        echo "+ $*" >&2
        "$@"
    fi
}

# One training per held-out item ($1: domain or generator), each into its own directory, then one table of all
# of them; flags after the recipe name ("${@:2}") go to every run. A failed run does not stop the others.
sweep() {
    local kind=$1 flag items root item failed=()
    shift
    if [[ $kind == domain ]]; then
        flag=--val_domain root=$OUTPUT_ROOT/leave-one-domain-out
        read -r -a items <<<"$HOLDOUT_DOMAINS"
    else
        flag=--val_generator root=$OUTPUT_ROOT/leave-one-generator-out
        read -r -a items <<<"$HOLDOUT_GENERATORS"
    fi
    local runs=()
    for item in "${items[@]}"; do
        run_or_print "$PYTHON" train.py --model roberta-base --data_dir "$DATA_DIR" --reddit_file "$REDDIT_FILE" \
            --use_class_weights "$flag" "$item" --output_dir "$root/$item" "$@" || failed+=("$item")
        runs+=("$root/$item")
    done
    run_or_print "$PYTHON" -m m4_training.summarize_runs --runs "${runs[@]}" --output "$root/summary.md"
    if ((${#failed[@]})); then
        echo "example_commands.sh: the runs holding out ${failed[*]} failed (see above)" >&2
        exit 3
    fi
}

# `--print` may stand anywhere on the line (train.py has no flag of that name).
print_only=0
arguments=()
for argument in "$@"; do
    if [[ $argument == --print ]]; then
        print_only=1
    else
        arguments+=("$argument")
    fi
done
set -- ${arguments[@]+"${arguments[@]}"}
case ${1:-} in
    "" | -h | --help) usage; echo "Recipes:"; list_recipes; exit 0 ;;
    list) list_recipes; exit 0 ;;
esac

cd "$(dirname "${BASH_SOURCE[0]}")"
case $1 in
    leave-one-domain-out | leave-one-generator-out)
        kind=${1#leave-one-}
        shift
        sweep "${kind%-out}" "$@"
        exit 0 ;;
esac
cmd=()
build_command "$1"
shift
cmd+=("$@")
if [[ $print_only == 1 ]]; then
    printf '%q ' "${cmd[@]}"
    echo
else
    echo "+ ${cmd[*]}" >&2
    exec "${cmd[@]}"
fi
