"""Issue 10, generation: non-finite logits raise naming the step and what was attached; plans are bound to
their model; inputs are validated with messages naming the value and the valid range."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from interventions import AffineMap, Plan, fold
from mdm_lens import HookedMDM
from mdm_lens.generation import NonFiniteLogitsError
from mdm_lens.testing import tiny_config

F64 = torch.float64
SITE = "blocks.1.mlp.hook_out"
SMALL = dict(gen_length=8, steps=8, block_length=8)


def _nan_at(step: int | None):
    def hook(act, ctx):
        if step is None or ctx.step == step:
            return torch.full_like(act, float("nan"))

    return hook


def _diag(d: int, omega: float) -> AffineMap:
    return AffineMap(d, "diag", torch.full((d,), omega, dtype=F64), torch.zeros(d, dtype=F64))


# ------------------------------------------------------------------------------------------ non-finite
def test_nan_hook_raises_naming_step_and_hooks(tiny_llada, tiny_dream):
    with (
        tiny_llada.hooks({SITE: _nan_at(3)}),
        pytest.raises(
            NonFiniteLogitsError,
            match=r"non-finite logits \(NaN or inf\) at denoising step 3 of 8 \(llada sampler, "
            r"block 0\): .* values; hooks or a plan were attached",
        ),
    ):
        tiny_llada.generate(["hello"], **SMALL)
    with tiny_dream.hooks({SITE: _nan_at(None)}), pytest.raises(NonFiniteLogitsError, match="step 0 of 6 .dream"):
        tiny_dream.generate(["hello"], max_new_tokens=6, steps=6)
    assert not tiny_llada.hooks_attached and tiny_llada.step_info is None
    assert tiny_llada.generate(["hello"], **SMALL).tokens.shape == (1, 8)  # the model is fine afterwards


def test_overflowing_plan_raises_naming_the_plan(tiny_llada):
    plan = Plan({SITE: _diag(64, 1e300)})  # finite in float64, inf in the model's float32
    with pytest.raises(NonFiniteLogitsError, match=r"step 0 of 8 .*generate\(plan=\.\.\.\) attached Plan\("):
        tiny_llada.generate(["hello"], plan=plan, **SMALL)


def test_non_finite_weights_without_hooks_say_so():
    model = HookedMDM.from_config(tiny_config("llada"))
    with torch.no_grad():
        model.model.get_submodule(model.site(SITE).linear).weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteLogitsError, match="no hooks or plan were attached: the model itself"):
        model.generate([[5, 6, 7]], **SMALL)
    assert not model(torch.tensor([[5, 6, 7]])).isfinite().all()  # a plain forward is not checked (no sampler)


# ------------------------------------------------------------------------------------------ binding
def _saved(tmp_path, model, name: str) -> Plan:
    path = tmp_path / f"{name}.safetensors"
    Plan({SITE: _diag(64, 1.5)}).save(path, model=model)
    return Plan.load(path)


def test_plan_from_another_family_is_refused_everywhere(tmp_path, tiny_llada, tiny_dream):
    dream_plan = _saved(tmp_path, tiny_dream, "dream")
    assert tiny_dream.site(SITE).width == tiny_llada.site(SITE).width == 64  # same widths, other family
    msg = r"plan refused: it was fitted on a 'dream' model \(.*\), and this is a 'llada' model"
    with pytest.raises(ValueError, match=msg):
        with tiny_llada.steer(dream_plan):
            pass
    with pytest.raises(ValueError, match=msg):
        tiny_llada.generate(["hi"], plan=dream_plan, **SMALL)
    before = {k: v.clone() for k, v in tiny_llada.state_dict().items()}
    with pytest.raises(ValueError, match=msg):
        fold(tiny_llada, dream_plan)
    assert all(torch.equal(before[k], v) for k, v in tiny_llada.state_dict().items()) and not tiny_llada.folded


def test_plan_of_other_widths_names_both(tmp_path, tiny_llada):
    wide = HookedMDM.from_config(tiny_config("llada", d_model=32, n_heads=2, n_kv_heads=2))
    plan = _saved(tmp_path, tiny_llada, "narrow")
    with pytest.raises(ValueError, match=r"site widths differ .*blocks.1.mlp.hook_out: plan 64, model 32"):
        fold(wide, plan)


def test_other_model_id_of_same_family_warns_once(tmp_path):
    a = HookedMDM.from_config(tiny_config("llada"))
    b = HookedMDM.from_config(tiny_config("llada"))
    a.name_or_path, b.name_or_path = f"org/llada-{tmp_path.name}", f"org/llada-1.5-{tmp_path.name}"
    plan = _saved(tmp_path, a, "sibling")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(3):
            with b.steer(plan):
                pass
        with b.steer(plan.strength(0.5)):
            pass
        with a.steer(plan):  # its own model: no warning
            pass
    texts = [str(w.message) for w in seen if "fitted on" in str(w.message)]
    assert len(texts) == 1 and "same family (llada) and site widths" in texts[0] and "llada-1.5" in texts[0]


def test_step_window_past_num_steps_warns_when_generation_starts(tiny_llada):
    plan = Plan({SITE: _diag(64, 1.5)}).window(steps=(4, 16))
    with pytest.warns(UserWarning, match=r"num_steps=8 \(steps 0..7\): blocks.1.mlp.hook_out: steps \[4, 16\]"):
        tiny_llada.generate(["hi"], plan=plan, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_llada.generate(["hi"], plan=plan, gen_length=16, steps=16, block_length=16)  # fits: silent


# ------------------------------------------------------------------------------------------ inputs
@pytest.mark.parametrize(
    "prompts,err,match",
    [
        ([b"hello"], TypeError, "prompt 0 is bytes; prompts are a str, a list of str, an integer tensor"),
        ([1, 2, 3], TypeError, r"prompts=\[1, 2, 3\] is a flat list of ints; wrap it as one prompt of ids"),
        ([[1.0, 2.5]], TypeError, r"prompt 0 is a list holding \['float'\]"),
        (["a", [1, 2]], TypeError, r"prompts mix str and other items \(prompt 1 is a list\)"),
        (torch.tensor([[1.0, 2.7]]), TypeError, "dtype torch.float32; token ids must be an integer tensor"),
        (torch.zeros(1, 2, 3, dtype=torch.long), ValueError, r"shape \(1, 2, 3\); pass \[batch, length\]"),
        ([], ValueError, "no prompts given"),
        (7, TypeError, "prompts is a int"),
        ([[5, 10_000]], ValueError, r"token ids \[10000\] outside the vocabulary \[0, 320\)"),
        ([[-1, 5]], ValueError, r"token ids \[-1\] outside the vocabulary"),
    ],
)
def test_prompts_are_validated(tiny_llada, prompts, err, match):
    with pytest.raises(err, match=match):
        tiny_llada.generate(prompts, **SMALL)


@pytest.mark.parametrize(
    "opts,match",
    [
        (dict(temperature=-1.0), r"temperature=-1.0 is invalid: temperature must be a finite number >= 0"),
        (dict(temperature=math.nan), r"temperature=nan is invalid"),
        (dict(temperature=math.inf), r"temperature=inf is invalid"),
        (dict(cfg_scale=-0.5), r"cfg_scale=-0.5 is invalid: .*0 turns classifier-free guidance off"),
        (dict(steps=0), r"steps=0 is invalid: steps must be a positive integer"),
        (dict(steps=8.0), r"steps=8.0 is invalid"),
        (dict(steps=True), r"steps=True is invalid"),
        (dict(gen_length=-8), r"gen_length=-8 is invalid"),
        (dict(block_length=2.5), r"block_length=2.5 is invalid"),
    ],
)
def test_llada_settings_are_validated(tiny_llada, opts, match):
    with pytest.raises(ValueError, match=match):
        tiny_llada.generate(["hi"], **{**SMALL, **opts})


@pytest.mark.parametrize(
    "opts,match",
    [
        (dict(top_p=-0.5), r"top_p=-0.5 is invalid: top_p must be None or a number in \(0, 1\]"),
        (dict(top_p=0.0), r"top_p=0.0 is invalid"),
        (dict(top_p=1.5), r"top_p=1.5 is invalid"),
        (dict(top_k=0), r"top_k=0 is invalid: top_k must be None or an integer >= 1"),
        (dict(alg_temp=-1.0), r"alg_temp=-1.0 is invalid"),
        (dict(max_new_tokens=0), r"max_new_tokens=0 is invalid"),
    ],
)
def test_dream_settings_are_validated(tiny_dream, opts, match):
    with pytest.raises(ValueError, match=match):
        tiny_dream.generate(["hi"], **{"max_new_tokens": 4, "steps": 4, **opts})


def test_settings_checked_where_merged_naming_their_source(tiny_llada):
    bad = HookedMDM(
        tiny_llada.model,
        tiny_llada.spec,
        tiny_llada.tokenizer,
        {**tiny_llada.config, "mdm_lens_sampler": {"temperature": -2.0}},
    )
    with pytest.raises(ValueError, match=r"temperature=-2.0 \(from the checkpoint's mdm_lens_sampler config\)"):
        bad.sampler_settings()
    assert bad.sampler_settings(temperature=0.5)["temperature"] == 0.5  # an override replaces the bad value
    ok = tiny_llada.sampler_settings(top_k=3, seed=1, plan=None)  # other keys pass through
    assert ok["top_k"] == 3 and ok["seed"] == 1


def test_nnsight_envelope_gets_the_same_validation(tiny_llada):
    from mdm_lens.nnsight_interop import MDMEnvelope

    env = MDMEnvelope(tiny_llada)
    with pytest.raises(ValueError, match="temperature=-1"):
        with env.generate(["hi"], temperature=-1.0, **SMALL):
            pass


def test_hook_replacement_on_another_device_names_the_site(tiny_llada):
    with (
        tiny_llada.hooks({SITE: lambda act, ctx: torch.empty_like(act, device="meta")}),
        pytest.raises(
            ValueError,
            match=r"hook on 'blocks.1.mlp.hook_out' returned .* on meta, but the site "
            r"carries .* on cpu; .*same device",
        ),
    ):
        tiny_llada(torch.tensor([[5, 6, 7]]))


def test_positions_past_the_trained_length_warn(tiny_llada):
    assert tiny_llada.config["max_sequence_length"] == 512
    with pytest.warns(
        UserWarning,
        match=r"prompt plus response is 516 positions, beyond this model's trained "
        r"max_sequence_length=512; RoPE extrapolates",
    ):
        tiny_llada.generate(torch.full((1, 500), 5), gen_length=16, steps=1, block_length=16)


def test_from_config_dtype_names():
    assert HookedMDM.from_config(tiny_config("llada"), dtype="bf16").dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype='int8' is not a floating dtype"):
        HookedMDM.from_config(tiny_config("llada"), dtype="int8")
