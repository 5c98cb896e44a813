"""`mdm-lens --help` answers without torch; every option says what it does, its default and its choices."""

import argparse
import subprocess
import sys

import pytest

from analyses.cli import commands as cli, demo as demo_cli


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


COMMANDS = sorted(_subparsers(cli.build_parser()))


def test_help_imports_neither_torch_nor_transformers():
    code = (
        "import sys\nfrom analyses.cli import main\nfor argv in [['--help']] + [[c, '--help'] for c in %r]:\n"
        "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0, argv\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'nnsight', 'matplotlib', 'numpy') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n" % (COMMANDS,)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "HEAVY []"
    for c in COMMANDS:  # every subcommand's help was printed
        assert f"usage: mdm-lens {c}" in out.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_default_and_choices(command):
    p = _subparsers(cli.build_parser())[command]
    text = p.format_help()
    assert "import" not in text and "house" not in text  # no developer notes
    for a in p._actions:
        if isinstance(a, argparse._HelpAction):
            continue
        name = a.option_strings[0] if a.option_strings else a.dest
        assert a.help and len(a.help) > 8, f"{command} {name} has no help text"
        if a.choices is not None:
            assert "{" + ",".join(map(str, a.choices)) + "}" in text, f"{command} {name}: choices not shown"
        if a.required or not a.option_strings:
            continue
        shown = a.help if "default" in a.help else cli.HelpFormatter(command)._get_help_string(a)
        assert "default" in shown, f"{command} {name}: default not shown"
        if a.default is not None and not isinstance(a, argparse._StoreTrueAction):
            assert str(a.default) in " ".join(text.split()), f"{command} {name}: default {a.default!r} not in help"


def test_cli_choices_equal_the_library_tables():
    from analyses.studies.experiment import METHODS
    from interventions import ESTIMATORS
    from mdm_lens.context import SCOPES
    from analyses.studies.organism.corpus import KINDS
    from mdm_lens.sampling.dream import ALGS
    from mdm_lens.sampling.llada import REMASKING
    from mdm_lens.sites import LAYER_ROLES

    assert cli.SCOPES == tuple(SCOPES)
    assert set(cli.ESTIMATORS) == set(ESTIMATORS)
    assert cli.ROLES == tuple(LAYER_ROLES)
    assert set(cli.KINDS) == set(KINDS)
    assert cli.DREAM_ALGS == tuple(ALGS) and cli.REMASKING == tuple(REMASKING)
    assert demo_cli.METHODS == tuple(METHODS)


def test_bad_choice_is_refused_before_any_model_loads(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["sweep", "--out", "x", "--scopes", "both"])
    assert e.value.code == 2 and "invalid choice: 'both'" in capsys.readouterr().err
