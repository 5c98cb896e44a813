"""`mdm-lens moments|effects|sweep|experiment` write their CSV/JSON/PNG outputs (organism, tiny sizes)."""

import json
import os

import pytest

from analyses.cli import main
from mdm_lens.organisms import available

pytestmark = pytest.mark.skipif("tiny-if" not in available(), reason="the tiny-if organism is not packaged")


def test_moments_and_effects(tmp_path):
    assert main(["moments", "--out", str(tmp_path / "m"), "--n", "6"]) == 0
    recs = json.load(open(tmp_path / "m" / "moments.json"))
    assert {r["estimator"] for r in recs} >= {"none", "linear_act"} and os.path.getsize(tmp_path / "m" / "moments.png")
    assert main(["effects", "--out", str(tmp_path / "e"), "--n", "6", "--n-eval", "2"]) == 0
    assert os.path.getsize(tmp_path / "e" / "effects.csv") and os.path.getsize(tmp_path / "e" / "effects.png")


def test_sweep_and_experiment(tmp_path, capsys):
    assert main(["sweep", "--out", str(tmp_path / "s"), "--n", "6", "--n-eval", "2", "--roles", "mlp_out"]) == 0
    assert os.path.getsize(tmp_path / "s" / "sweep.png")
    recs = json.load(open(tmp_path / "s" / "sweep.json"))
    assert recs[0]["metric"] == "change_case:english_lowercase strict pass rate"
    assert (
        main(
            [
                "experiment",
                "--model",
                "tiny-if",
                "--out",
                str(tmp_path / "x"),
                "--n-calib",
                "4",
                "--n-val",
                "1",
                "--n-test",
                "2",
                "--lambdas",
                "1.0",
                "--methods",
                "none",
                "linear_act",
                "--gen-length",
                "16",
                "--steps",
                "8",
                "--block-length",
                "16",
            ]
        )
        == 0
    )
    res = json.load(open(tmp_path / "x" / "result.json"))
    assert set(res["summary"]) == {"none", "linear_act"} and res["config"]["lambdas"] == [1.0]
    from test_verdicts_terminal import MD_ROW, TERM_ROW, _rows  # the printed verdict is summary.md's

    md = open(tmp_path / "x" / "summary.md").read()
    assert _rows(capsys.readouterr().out, TERM_ROW) == _rows(md, MD_ROW) != []


def _prompt_files(tmp_path):
    from analyses.studies.organism.corpus import calibration_pairs

    src, tgt = calibration_pairs("change_case:english_lowercase", 4, 0)
    (tmp_path / "a.txt").write_text("\n".join(src))
    (tmp_path / "b.txt").write_text("\n".join(tgt))
    return ["--source", str(tmp_path / "a.txt"), "--target", str(tmp_path / "b.txt")]


def test_sweep_from_files_needs_a_metric(tmp_path, capsys):
    files = _prompt_files(tmp_path)
    assert main(["sweep", "--out", str(tmp_path / "s"), *files]) == 2
    assert "need --metric" in capsys.readouterr().err and not (tmp_path / "s").exists()
    assert main(["sweep", "--out", str(tmp_path / "s"), *files, "--metric", "magic"]) == 2
    assert "metric 'magic'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # an empty --instruction-id is refused, never a silent switch of metric
        main(["sweep", "--out", str(tmp_path / "s"), "--instruction-id", ""])


def test_sweep_from_files_with_metric(tmp_path):
    files = _prompt_files(tmp_path)
    assert (
        main(
            [
                "sweep",
                "--out",
                str(tmp_path / "s"),
                *files,
                "--metric",
                "change_case:english_lowercase",
                "--n-eval",
                "2",
                "--roles",
                "mlp_out",
            ]
        )
        == 0
    )
    recs = json.load(open(tmp_path / "s" / "sweep.json"))
    assert len(recs) == 4 and {r["metric"] for r in recs} == {"change_case:english_lowercase pass rate"}
    assert all(0 <= r["score"] <= 1 for r in recs) and os.path.getsize(tmp_path / "s" / "sweep.png")


def test_resolve_metric():
    from analyses.sweep import resolve_metric

    name, f = resolve_metric("change_case:english_lowercase")
    assert f(["all lower", "Not Lower"]) == 0.5
    name, f = resolve_metric("keywords:existence", {"keywords": ["cat"]})
    assert f(["a cat sat", "a dog"]) == 0.5
    with pytest.raises(ValueError, match="missing kwargs"):
        resolve_metric("keywords:existence")
    name, f = resolve_metric("analyses.refusal:refusal_rate")
    assert name == "analyses.refusal:refusal_rate" and f(["I cannot help with that.", "Sure, here it is."]) == 0.5
    assert resolve_metric("refusal")[0] == "refusal rate"
    with pytest.raises(ValueError, match="cannot load"):
        resolve_metric("analyses.refusal:nope")
    with pytest.raises(ValueError, match="not an IFEval instruction id"):
        resolve_metric("change_case:nope")


def test_old_spellings_warn_and_still_work(capsys):
    """`--hook-points`, `--hook-point` and `--kind` are deprecated aliases of `--roles`, `--role` and
    `--instruction-id` for one release: same value, one line on stderr naming the replacement."""
    from analyses.cli.commands import build_parser

    parser = build_parser()
    new = parser.parse_args(["sweep", "--out", "x", "--roles", "mlp_out", "--instruction-id", "punctuation:no_comma"])
    old = parser.parse_args(["sweep", "--out", "x", "--hook-points", "mlp_out", "--kind", "punctuation:no_comma"])
    assert (old.roles, old.instruction_id) == (new.roles, new.instruction_id) == (["mlp_out"], "punctuation:no_comma")
    err = capsys.readouterr().err
    assert "--hook-points is deprecated" in err and "use --roles" in err and "use --instruction-id" in err
    assert parser.parse_args(["moments", "--out", "x", "--hook-point", "resid_post"]).role == "resid_post"
    assert "use --role" in capsys.readouterr().err
