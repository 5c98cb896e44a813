"""The rough edges a newcomer hit in the first hour (issue 25, point 7), each held by a behaviour that could fail."""

import argparse
import json
import sys

import pytest
import torch

from analyses.cli import commands as cli
from analyses.cli import main
from analyses.damage import degeneracy


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    from mdm_lens.testing import save_tiny_checkpoint

    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-llada"), "llada"))


def _subparsers(parser):
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("command", sorted(_subparsers(cli.build_parser())))
def test_help_states_each_default_once(command):
    p = _subparsers(cli.build_parser())[command]
    fmt = p._get_formatter()
    for a in p._actions:
        if a.help and a.option_strings:
            shown = fmt._expand_help(a)  # as --help prints it
            assert shown.count("(default") <= 1, f"{command} {a.option_strings[0]}: {shown}"


def test_generate_with_a_plan_file(saved_tiny, tmp_path, capsys):
    from interventions import MeanACT, Plan
    from mdm_lens import HookedMDM

    model = HookedMDM.from_pretrained(saved_tiny)
    site = "blocks.1.hook_resid_post"
    g = torch.Generator().manual_seed(0)
    src, tgt = torch.randn(8, 64, generator=g), torch.randn(8, 64, generator=g) + 3.0
    path = tmp_path / "plan.safetensors"
    Plan({site: MeanACT.fit(src, tgt)}).save(str(path), model=model)
    args = [
        "generate",
        "--model",
        saved_tiny,
        "--prompt",
        "hello world",
        "--gen-length",
        "8",
        "--steps",
        "4",
        "--block-length",
        "8",
        "--no-chat",
    ]
    assert main(args + ["--plan", str(path), "--strength", "0.5"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["plan"] == str(path) and row["strength"] == 0.5
    kw = dict(gen_length=8, steps=4, block_length=8, chat=False, seed=0)
    steered = model.generate(["hello world"], plan=Plan.load(str(path)).strength(0.5), **kw).texts[0]
    assert row["response"] == steered != model.generate(["hello world"], **kw).texts[0]
    assert main(args + ["--plan", str(tmp_path / "missing.safetensors")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_site_list_opens_with_a_real_activation(tiny_llada, tiny_dream):
    for model in (tiny_llada, tiny_dream):
        names = model.hook_names
        assert names[0] == "hook_embed" and model.site(names[0]).width == model.cfg.d_model
        assert names[-1] == "embed.hook_in" and model.site(names[-1]).width == 0


@pytest.mark.parametrize("text", ["Paris.", "yes", "  Sure!  ", "42"])
def test_one_word_answers_are_degenerate(text):
    assert degeneracy(text) == ["too_short"]
    assert degeneracy(text, min_words=1) == []
    assert degeneracy("Paris is nice.") == [] and degeneracy("...") == []


def test_decode_order_shows_special_tokens(tiny_llada):
    from mdm_lens.prompt_probe import decode_order

    out = tiny_llada.generate(["hello"], gen_length=8, steps=8, block_length=8, chat=False, seed=0)
    order = decode_order(tiny_llada, out)
    assert [s for s, _, _ in order] == sorted(s for s, _, _ in order) and len(order) == 8
    eos = tiny_llada.tokenizer.eos_token_id
    out.tokens[0, -1] = eos  # an EOS fill, as a finished answer has
    last = [t for _, j, t in decode_order(tiny_llada, out) if j == 7]
    assert last == [repr(tiny_llada.tokenizer.decode([eos], skip_special_tokens=False))] and last[0] != "''"


def test_resolved_sampler_settings_are_reported(tiny_llada):
    from analyses.studies.experiment import resolved_sampler

    got = resolved_sampler(tiny_llada, {"steps": 8})
    assert got["sampler"] == "reference" and got["steps"] == 8 and got["gen_length"] == 128
    assert got["remasking"] == "low_confidence"  # the family's recommendation, spelled out


def test_quick_reports_say_they_are_smoke_runs(tmp_path):
    from analyses.studies.demo import SMOKE, write_report

    (tmp_path / "q").mkdir()
    (tmp_path / "f").mkdir()
    write_report(str(tmp_path / "q"), "t", {"quick": True, "seed": 0}, [])
    assert SMOKE in (tmp_path / "q" / "summary.md").read_text()
    write_report(str(tmp_path / "f"), "t", {"quick": False, "seed": 0}, [])
    assert "Smoke run" not in (tmp_path / "f" / "summary.md").read_text()


def test_ctrl_c_in_experiment_prints_one_resume_line(monkeypatch, capsys, tmp_path):
    import analyses.studies.experiment as exp

    def interrupted(*a, **k):  # what a Ctrl-C mid-run raises
        raise KeyboardInterrupt

    monkeypatch.setattr(exp, "run_experiment", interrupted)
    argv = [
        "experiment",
        "--model",
        "tiny-if",
        "--out",
        str(tmp_path / "run"),
        "--n-calib",
        "2",
        "--n-val",
        "1",
        "--n-test",
        "1",
    ]
    monkeypatch.setattr(sys, "argv", ["mdm-lens", *argv])
    assert main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0].endswith("mdm-lens " + " ".join(argv)) and "generations.jsonl" in err[0]


def test_sweep_says_what_it_steers_and_saves_its_generations(tmp_path, capsys):
    from mdm_lens.organisms import available

    if "tiny-if" not in available():
        pytest.skip("the tiny-if organism is not packaged")
    from analyses.studies.organism.corpus import calibration_pairs

    src, tgt = calibration_pairs("change_case:english_lowercase", 4, 0)
    (tmp_path / "a.txt").write_text("\n".join(src))
    (tmp_path / "b.txt").write_text("\n".join(tgt))
    out = tmp_path / "s"
    assert (
        main(
            [
                "sweep",
                "--out",
                str(out),
                "--source",
                str(tmp_path / "a.txt"),
                "--target",
                str(tmp_path / "b.txt"),
                "--metric",
                "change_case:english_lowercase",
                "--n-eval",
                "2",
                "--hook-points",
                "mlp_out",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "steered and scored: 2 target prompts of b.txt" in printed and "sweep_generations.jsonl" in printed
    gens = [json.loads(line) for line in (out / "sweep_generations.jsonl").read_text().splitlines()]
    recs = json.load(open(out / "sweep.json"))
    assert {g["prompt"] for g in gens} == set(tgt[:2])  # the target prompts, not the source ones
    assert len(gens) == 2 * (1 + len(recs)) and sum(g["cell"] == "baseline" for g in gens) == 2
    from analyses.ifeval import check

    base = [g["text"] for g in gens if g["cell"] == "baseline"]
    rate = sum(all(check(t, ["change_case:english_lowercase"], [{}], "", loose=False)) for t in base) / 2
    assert recs[0]["baseline"] == rate  # the saved texts are the scored ones
    assert "TARGET prompts" in " ".join(
        cli.build_parser()._subparsers._group_actions[0].choices["sweep"].description.split()
    )
