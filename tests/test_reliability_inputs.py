"""Issue 20, points 2, 4, 8, 10, 15, 16: one validation of ids, seeds and sampler values (mdm_lens.validate,
generation.check_sampler_settings) for generate, likelihood, the experiment and the TL conveniences; files
written through symlinks and over read-only files."""

import math
import os

import pytest
import torch

from mdm_lens.likelihood import log_likelihood
from mdm_lens.safefile import write_text_atomic


# ---------------------------------------------------------------------------------------------- likelihood (8, 15)
@pytest.mark.parametrize(
    "kw, exc, msg",
    [
        (dict(answer=[7.9, 8.2]), TypeError, r"answer holds 7.9 \(float\); token ids must be ints"),
        (dict(answer=torch.tensor([7.9, 8.2])), TypeError, r"answer is a torch.float32 tensor"),
        (
            dict(answer=[5, 99999]),
            ValueError,
            r"answer of pair 0 holds token ids \[99999\] outside the vocabulary \[0, 320\)",
        ),
        (dict(answer=[-3, 5]), ValueError, r"token ids \[-3\] outside the vocabulary"),
        (dict(cfg_scale=float("nan")), ValueError, r"cfg_scale=nan is invalid: cfg_scale must be a finite number >= 0"),
        (dict(seed="12"), TypeError, r"seed='12' must be an integer .*int\(\.\.\.\) it yourself"),
        (dict(seed=1.5), TypeError, r"seed=1.5 must be an integer"),
        (dict(mc_num=True, batch_size=1), ValueError, r"mc_num=True with batch_size=1"),
    ],
)
def test_likelihood_refuses_what_generate_refuses(tiny_llada, kw, exc, msg):
    args = dict(prompt=[5, 6, 7], answer=[8, 9], mc_num=2, batch_size=2, seed=0) | kw
    with pytest.raises(exc, match=msg):
        log_likelihood(tiny_llada, **args)


def test_likelihood_nan_from_a_hook_is_an_error(tiny_llada):
    with tiny_llada.hooks({"blocks.0.hook_resid_post": lambda a, c: a * float("nan")}):
        with pytest.raises(FloatingPointError, match=r"log-likelihoods of pairs \[0\] came out non-finite.*hook"):
            log_likelihood(tiny_llada, [5, 6, 7], [8, 9], mc_num=2, batch_size=2, seed=0)
    assert math.isfinite(log_likelihood(tiny_llada, [5, 6, 7], [8, 9], mc_num=2, batch_size=2, seed=0))


# ---------------------------------------------------------------------------------------------- experiment (2)
@pytest.mark.parametrize(
    "over, msg",
    [
        (dict(sampler={"threshold": 1.5}), r"threshold=1.5 \(from ExperimentConfig.sampler\) is invalid"),
        (dict(mc_num=10, mc_batch=4), r"mc_num=10 with batch_size=4"),
        (dict(lambdas=(0.5, float("nan"))), r"lambdas \[nan\]: every strength must be a finite number"),
    ],
)
def test_experiment_options_refused_before_the_first_byte(tiny_llada, tmp_path, over, msg):
    from analyses.studies.experiment import ExperimentConfig, run_experiment
    from test_experiment import _tasks

    with pytest.raises(ValueError, match=msg):
        run_experiment(tiny_llada, _tasks()[:1], ExperimentConfig(**over), progress=False, out=str(tmp_path / "o"))
    assert not (tmp_path / "o").exists() or not os.listdir(tmp_path / "o")


@pytest.mark.parametrize("thr", [True, "0.9", float("nan")])
def test_threshold_must_be_a_number(tiny_llada, thr):
    with pytest.raises(ValueError, match=r"threshold=.* is invalid: threshold must be None or a number in \[0, 1\]"):
        tiny_llada.generate([[5, 6]], sampler="fast", threshold=thr, steps=4, gen_length=4, block_length=4)


# ---------------------------------------------------------------------------------------------- TL conveniences (10, 15)
def test_run_with_cache_refuses_float_and_out_of_vocab_ids(tiny_llada):
    with pytest.raises(TypeError, match=r"holds 5.7 \(float\)"):
        tiny_llada.run_with_cache([[5.7, 6.2]])
    with pytest.raises(TypeError, match=r"input tensor is a torch.float32 tensor"):
        tiny_llada.run_with_cache(torch.tensor([[5.7, 6.2]]))
    with pytest.raises(ValueError, match=r"token ids \[99999\] outside the vocabulary \[0, 320\)"):
        tiny_llada.run_with_cache([[5, 99999]])


def test_run_with_hooks_predicate_matching_site_and_alias_hooks_once(tiny_llada):
    calls = []
    tiny_llada.run_with_hooks(
        [[5, 6, 7]],
        fwd_hooks=[
            (lambda n: n in ("blocks.0.hook_resid_pre", "blocks.0.hook_in"), lambda t, hook: calls.append(hook.name))
        ],
    )
    assert len(calls) == 1


def test_decoding_refuses_ids_outside_the_vocab_and_3d(tiny_llada):
    with pytest.raises(ValueError, match=r"tokens holds token ids \[99999\] outside the vocabulary"):
        tiny_llada.to_string([[5, 99999]])
    with pytest.raises(ValueError, match=r"to_str_tokens takes ids \[pos\] or \[batch, pos\]; got shape \(2, 1, 2\)"):
        tiny_llada.to_str_tokens(torch.tensor([[[5, 6]], [[7, 8]]]))


@pytest.mark.parametrize(
    "call, exc, msg",
    [
        (
            lambda m: m.run_with_hooks([[5, 6]], fwd_hooks=["blocks.0.hook_resid_pre"]),
            TypeError,
            r"fwd_hooks\[0\] is 'blocks.0.hook_resid_pre'; each entry is a \(name or name-predicate, fn",
        ),
        (
            lambda m: m.run_with_hooks([[5, 6]], fwd_hooks=[("blocks.0.hook_resid_pre", lambda t: None)]),
            TypeError,
            r"hook fn '<lambda>'\(t\) for 'blocks.0.hook_resid_pre' cannot be called as fn\(tensor, hook\)",
        ),
        (lambda m: m.to_tokens(["a", 5]), TypeError, r"input mixes strings and other items \(item 1 is 5\)"),
        (lambda m: m.run_with_cache([[5, 6]], names_filter=5), TypeError, r"names_filter=5: pass None"),
        (
            lambda m: m(torch.tensor([[5, 6, 7]]), attention_mask=torch.ones(1, 2, dtype=torch.long)),
            ValueError,
            r"attention_mask has shape \(1, 2\) but input_ids \(1, 3\)",
        ),
        (
            lambda m: m(torch.tensor([[5, 6, 7]]), attention_mask=torch.tensor([[0, 1]])),
            ValueError,
            r"attention_mask has shape \(1, 2\) but input_ids \(1, 3\)",
        ),
    ],
)
def test_tl_inputs_refused_before_torch_internals(tiny_llada, call, exc, msg):
    with pytest.raises(exc, match=msg):
        call(tiny_llada)
    assert not tiny_llada.hooks_attached


# ---------------------------------------------------------------------------------------------- files (4, 16)
def test_write_through_a_symlink_updates_the_target(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_text_atomic("new", link)
    assert link.is_symlink() and target.read_text() == "new"


def test_replacing_the_owners_read_only_file(tmp_path):
    f = tmp_path / "plan.json"
    f.write_text("old")
    os.chmod(f, 0o444)
    write_text_atomic("new", f)
    assert f.read_text() == "new" and (os.stat(f).st_mode & 0o777) == 0o444
    assert sorted(os.listdir(tmp_path)) == ["plan.json"]


# ---------------------------------------------------------------------------------------------- cache keys (14, 15)
@pytest.mark.parametrize(
    "key, msg",
    [
        (("resid_post", 10), r"layer 10 in \('resid_post', 10\) does not exist: this model has layers 0..1"),
        (("resid_post", -5), r"layer -5 .* does not exist: this model has layers 0..1 \(or -2..-1 from the end\)"),
        (
            ("resid_pst", 0),
            r"unknown hook site 'blocks.0.hook_resid_pst'; closest real sites: 'blocks.0.hook_resid_post'",
        ),
        (("resid_post", 1.5), r"layer 1.5 in \('resid_post', 1.5\) must be an integer"),
    ],
)
def test_cache_keys_that_name_no_site_have_their_own_message(tiny_llada, key, msg):
    _, cache = tiny_llada.run_with_cache([[5, 6, 7]], names_filter=["blocks.0.hook_resid_post"])
    with pytest.raises(KeyError, match=msg):
        cache[key]
    assert cache["resid_post", -2].shape == (1, 3, 64)


def test_norm_layer_and_logit_attr_shapes_are_checked(tiny_llada):
    from mdm_lens.sites import get_act_name

    _, cache = tiny_llada.run_with_cache([[5, 6, 7], [8, 9, 10]])
    stack = cache.accumulated_resid()
    with pytest.raises(ValueError, match=r"layer=7: the norm reading the stream at a layer in 0..1"):
        cache.apply_ln_to_stack(stack, layer=7)
    with pytest.raises(ValueError, match=r"tokens give shape \(3, 1\) but the residual stack's examples are \(2, 3\)"):
        cache.logit_attrs(stack, torch.tensor([1, 2, 3]))
    with pytest.raises(TypeError, match=r"get_act_name\(name=None, \.\.\.\): name is a site role or name string"):
        get_act_name(None, 0)
