"""docs/transformerlens.md: its walkthrough runs as written on the packaged organism, and its hand-made logit lens
at step 8 equals the analysis' numbers."""

import re
import runpy
from pathlib import Path

import pytest

from mdm_lens.organisms import available

DOC = Path(__file__).resolve().parents[1] / "docs" / "transformerlens.md"


@pytest.mark.skipif("tiny-if" not in available(), reason="the tiny-if organism is not packaged")
def test_walkthrough_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "walkthrough.py"
    script.write_text(blocks[0])
    ns = runpy.run_path(str(script), run_name="__main__")
    printed = capsys.readouterr().out
    assert "['0_pre', '1_pre', '2_pre', '3_pre', 'final_post'] True" in printed
    res, out = ns["res"], ns["out"]
    assert res.texts == out.texts and res.steps == list(range(0, 24, 2))
    by_hand = ns["p_final"].detach().mean(-1)[1:]  # resid_post of layers 0..3
    grid = {(g["layer"], g["step"]): g["mean_p_final"] for g in res.grid}
    for layer in range(4):
        assert float(by_hand[layer]) == pytest.approx(grid[(layer, 8)], abs=1e-5)
    assert (tmp_path / "lens.png").stat().st_size > 1000


def test_doc_names_exist():
    """Every method and attribute the page's tables name exists on HookedMDM / ActivationCache."""
    from mdm_lens import ActivationCache, HookedMDM

    text = DOC.read_text()
    for name in (
        "accumulated_resid",
        "decompose_resid",
        "apply_ln_to_stack",
        "stack_activation",
        "logit_attrs",
        "stack_head_results",
        "get_full_resid_decomposition",
        "remove_batch_dim",
        "to",
    ):
        assert name in text and callable(getattr(ActivationCache, name))
    for name in (
        "run_with_cache",
        "run_with_hooks",
        "to_tokens",
        "to_str_tokens",
        "to_string",
        "to_single_token",
        "cache_steps",
        "hooks",
        "generate",
    ):
        assert name in text and callable(getattr(HookedMDM, name))
    for name in (
        "cfg",
        "W_U",
        "W_E",
        "b_U",
        "W_O",
        "W_in",
        "W_gate",
        "W_out",
        "step_info",
        "hook_names",
        "all_hook_names",
    ):
        assert name in text and hasattr(HookedMDM, name)
