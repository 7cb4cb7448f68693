"""The command line explains itself: help and a default for every option, no docstring markup."""

from __future__ import annotations

import argparse
import re

import pytest
from helpers import run

from fisherlab.cli import build_parser, plain

FLAGS = (
    argparse._StoreTrueAction,
    argparse._StoreConstAction,
    argparse._HelpAction,
    argparse._VersionAction,
)
MARKUP = re.compile(r"``|:(?:func|meth|class|mod|data|attr):|module docs")


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


COMMANDS = _commands()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help_and_shows_its_default(name):
    command = COMMANDS[name]
    formatter = command._get_formatter()
    chosen_one = {  # one of a required group (train's --arch | --init): no default to show
        a for g in command._mutually_exclusive_groups if g.required for a in g._group_actions
    }
    missing = []
    for action in command._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, FLAGS[2:]):
            continue
        text = formatter._expand_help(action) if action.help else ""
        if not text.strip():
            missing.append(f"{action.dest}: no help")
        elif (
            action.option_strings
            and not action.required
            and action not in chosen_one
            and not isinstance(action, FLAGS)
        ):
            if "default" not in text:
                missing.append(f"{action.dest}: no default shown in {text!r}")
    assert not missing, missing


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_has_no_markup_and_one_real_example(name):
    text = COMMANDS[name].format_help()
    assert not MARKUP.search(text), MARKUP.search(text).group(0)
    assert re.search(r"examples?: fisherlab " + re.escape(name), text), "no example"


def test_plain_strips_roles_literals_and_pointers():
    assert plain(":func:`~fisherlab.loop.defend` and :class:`Recommendation`") == (
        "defend and Recommendation"
    )
    assert plain("the ``model`` (see the module docs).") == "the model."


def test_lam_means_one_thing(tmp_path):
    attack_help = COMMANDS["attack"].format_help()
    assert "--id-weight" in attack_help and "--lam" not in attack_help
    assert "--lam" in COMMANDS["recommend-freeze"].format_help()
    # the old spelling still parses, into the new option
    args = build_parser().parse_args(["attack", "m.pt", "--out", "x", "--lam", "50"])
    assert args.lam_deprecated == 50.0


def test_a_folder_where_a_file_is_wanted_says_so(tmp_path):
    proc = run("train", "--arch", "target_cnn", "--data", "mnist5k:0-4", "--out", str(tmp_path))
    assert proc.returncode == 1 and "is an existing directory: give a file path" in proc.stderr
    (tmp_path / "f").write_text("")
    proc = run("reproduce", "--out", str(tmp_path / "f"))
    assert proc.returncode == 1 and "is an existing file: give a folder" in proc.stderr
