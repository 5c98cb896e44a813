"""Regenerate tests/fixtures/tl_goldens_{llada,dream}.safetensors from TransformerLens 4.3's own bridge.

Two steps, two environments (the reference needs TL 4.3 + its transformers; mdm-lens is not imported there):

    # 1. project venv: write mdm-lens's seeded tiny models in hub layout, beside the hub's remote code
    python scripts/make_tl_goldens.py export --out DIR --llada-ref LLADA_CODE_DIR --dream-ref DREAM_CODE_DIR
    # 2. scratch venv with `transformer-lens==4.3.0` (it pulls transformers 5.23): run TL's bridge over them
    python scripts/make_tl_goldens.py goldens --llada DIR/llada --dream DIR/dream [--out tests/fixtures]

LLADA_CODE_DIR holds the hub's `modeling_llada.py` + `configuration_llada.py` (the revision whose forward
honours `attention_mask` with a bidirectional bias), DREAM_CODE_DIR `modeling_dream.py` +
`configuration_dream.py` + `generation_utils.py`. The models are `build_random_model(tiny_config(f), seed=0)`,
with the norm weights perturbed (stored in the fixture as `weights.<name>`): a test rebuilds the model
with mdm-lens, loads those over it and compares against the stored tensors.

Each fixture holds, for one input (batch 2, 8 positions; LLaDA's second row left-padded by 2 through
`attention_mask`, Dream unpadded: see `padded` in the metadata), the bridge's logits (`logits`), the norm weights
(`weights.<hub name>`), every hook name of `run_with_cache` (`cache.<name>`: one tensor per group of names
carrying equal tensors, `stored_as` in the metadata maps each name to its key) and the outputs of TL's
`ActivationCache` methods (`acache.<key>`, the call in `calls`). The metadata JSON (`meta`) also holds the
names in cache order with shapes, labels, `get_act_name` results, `cache[key]` resolutions, TL's cfg fields,
the plain hub model's max |logit difference| to the bridge, the errors TL raised, and the versions used.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

SEQ = 8
N_PAD = 2
ACT_NAME_CASES = [  # (args to get_act_name) TL's short names, aliases, compact forms and full names
    ("embed",),
    ("pos_embed",),
    ("resid_pre", 1),
    ("resid_mid", 1),
    ("resid_post", 1),
    ("attn_out", 0),
    ("mlp_out", 0),
    ("pattern", 1),
    ("attn", 1),
    ("attn_scores", 1),
    ("attn_logits", 1),
    ("q", 0),
    ("k", 0),
    ("v", 0),
    ("z", 0),
    ("query", 0),
    ("key", 0),
    ("value", 0),
    ("rot_q", 1),
    ("rot_k", 1),
    ("result", 0),
    ("pre", 0),
    ("post", 0),
    ("mid", 0),
    ("pre_linear", 0),
    ("mlp_pre", 0),
    ("mlp_post", 0),
    ("mlp_mid", 0),
    ("scale",),
    ("normalized",),
    ("scale", 1, "ln1"),
    ("normalized", 0, "ln2"),
    ("scale", 0, "ln2"),
    ("attn_in", 0),
    ("q_input", 0),
    ("k_input", 0),
    ("v_input", 0),
    ("mlp_in", 0),
    ("k6",),
    ("pre5",),
    ("scale4ln1",),
    ("resid_post3",),
    ("hook_embed",),
    ("blocks.0.hook_resid_pre",),
    ("resid_pre", 1, "b"),
    ("k", 1, "a"),
    ("logits",),
    ("unembed",),
]


# ---------------------------------------------------------------------------------------------- export
def is_norm_weight(name: str) -> bool:
    return name.endswith(".weight") and ("norm" in name or ".ln_f." in name)


def perturb_norms(model: torch.nn.Module) -> None:
    """Norm weights 1 + 0.1 * N(0, 1) (seed 1, in state-dict order): build_random_model leaves them at one,
    which would hide whether a hook sits before or after the weight multiply. The fixture stores them
    (`weights.<name>`); a test loads them over `build_random_model(tiny_config(f), seed=0)`."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.state_dict(keep_vars=True).items():
            if is_norm_weight(name):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))


def export(args: argparse.Namespace) -> None:
    """Project venv: save mdm-lens's seeded tiny models + tokenizers in hub layout with the remote code."""
    from mdm_lens.loading import build_random_model, save_pretrained

    try:
        from mdm_lens.testing import tiny_config
    except ImportError:
        from mdm_lens.loading import tiny_config
    from mdm_lens.tiny_tokenizer import build_test_tokenizer

    refs = {"llada": args.llada_ref, "dream": args.dream_ref}
    for family, ref in refs.items():
        if not ref:
            continue
        cfg = tiny_config(family)
        model = build_random_model(cfg, seed=0)
        perturb_norms(model)
        folder = save_pretrained(model, build_test_tokenizer(style=family), cfg, Path(args.out) / family)
        for src in sorted(Path(ref).glob("*.py")):
            shutil.copy(src, folder / src.name)
        if family == "dream":  # the hub checkpoint ships one; DreamModel.from_pretrained insists on it
            gen = {k: cfg[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id", "mask_token_id")}
            (folder / "generation_config.json").write_text(json.dumps(gen, indent=2))
        print(f"wrote {folder}")


# --------------------------------------------------------------------------------------------- goldens
def boot_llada(folder: str):
    """TL's LLaDA adapter over the hub code. `boot_transformers(path)` alone fails on transformers 5.23
    (`'LLaDAModelLM' object has no attribute 'all_tied_weights_keys'` inside from_pretrained), so the hub
    model is built from its own class and handed over as `hf_model=` with the weights loaded strictly."""
    from safetensors.torch import load_file
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    hub = get_class_from_dynamic_module("modeling_llada.LLaDAModelLM", folder)(config, init_params=False)
    hub.load_state_dict(load_file(str(Path(folder) / "model.safetensors")), strict=True)
    hub.eval()
    return TransformerBridge.boot_transformers(folder, trust_remote_code=True, device="cpu", hf_model=hub)


def boot_dream(folder: str):
    """TL's Dream adapter over the hub code, with two workarounds for transformers 5.23 + a local folder:
    (1) `boot_transformers(path)` leaves every rotary `inv_freq` buffer uninitialised (garbage or NaN logits:
    the meta-device load never recomputes the non-persistent buffers), so the hub model is built eagerly from
    its own class (after TL's own rope shim) and handed over as `hf_model=` with the weights loaded strictly;
    (2) TL patches `DreamGenerationConfig.validate` on a copy of `generation_utils` that transformers imports
    under another hash directory than the one `modeling_dream` uses, so the patch is applied to that copy."""
    from safetensors.torch import load_file
    from transformer_lens.model_bridge import TransformerBridge
    from transformer_lens.model_bridge.supported_architectures._remote_code_compat import restore_default_rope_init
    from transformer_lens.model_bridge.supported_architectures.dream import _patch_from_model_config
    from transformers import AutoConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    model_cls = get_class_from_dynamic_module("modeling_dream.DreamModel", folder)
    gen_mod = sys.modules[model_cls.__module__.rsplit(".", 1)[0] + ".generation_utils"]
    gen_mod.DreamGenerationConfig.validate = lambda self, *a, **k: None
    _patch_from_model_config(gen_mod.DreamGenerationConfig)
    restore_default_rope_init(folder, "modeling_dream.DreamModel", "DreamRotaryEmbedding")
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    hub = model_cls(config)
    hub.load_state_dict(load_file(str(Path(folder) / "model.safetensors")), strict=True)
    hub.eval()
    inv_freq = [b for n, b in hub.named_buffers() if n.endswith("inv_freq")]
    head_dim = config.hidden_size // config.num_attention_heads
    expected = 1.0 / (config.rope_theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    assert inv_freq and all(torch.allclose(b, expected) for b in inv_freq), "Dream rotary buffers not initialised"
    return TransformerBridge.boot_transformers(folder, trust_remote_code=True, device="cpu", hf_model=hub)


def make_inputs(cfg: dict, padded: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded ordinary tokens with the last 3 positions masked (a sampler step); row 1 optionally left-padded."""
    gen = torch.Generator().manual_seed(11)
    ids = torch.randint(0, 250, (2, SEQ), generator=gen)
    ids[:, -3:] = cfg["mask_token_id"]
    mask = torch.ones(2, SEQ, dtype=torch.long)
    if padded:
        ids[1, :N_PAD] = cfg["pad_token_id"]
        mask[1, :N_PAD] = 0
    return ids, mask


def tl_calls(bridge, cache, target: int) -> tuple[dict[str, torch.Tensor], dict]:
    """The ActivationCache methods a TL user types, each recorded as tensor (+ labels) or as TL's error."""
    out: dict[str, torch.Tensor] = {}
    meta: dict = {"labels": {}, "errors": {}, "calls": {}}

    def record(key: str, call: str, fn):
        meta["calls"][key] = call
        try:
            res = fn()
        except Exception as exc:  # noqa: BLE001 - TL's failure is itself the golden
            meta["errors"][key] = f"{type(exc).__name__}: {exc}"[:400]
            return None
        if isinstance(res, tuple):
            res, labels = res
            meta["labels"][key] = list(labels)
        out[key] = res.detach().float().contiguous().clone()
        return res

    record(
        "accumulated_resid",
        "accumulated_resid(layer=None, incl_mid=True, apply_ln=True, return_labels=True)",
        lambda: cache.accumulated_resid(layer=None, incl_mid=True, apply_ln=True, return_labels=True),
    )
    raw = record(
        "accumulated_resid_raw",
        "accumulated_resid(layer=None, incl_mid=True, apply_ln=False, return_labels=True)",
        lambda: cache.accumulated_resid(layer=None, incl_mid=True, apply_ln=False, return_labels=True),
    )
    record(
        "accumulated_resid_l1_ln",
        "accumulated_resid(layer=1, incl_mid=True, apply_ln=True, return_labels=True)",
        lambda: cache.accumulated_resid(layer=1, incl_mid=True, apply_ln=True, return_labels=True),
    )
    record(
        "accumulated_resid_l1_mlp_input",
        "accumulated_resid(layer=1, mlp_input=True, apply_ln=True, return_labels=True)",
        lambda: cache.accumulated_resid(layer=1, mlp_input=True, apply_ln=True, return_labels=True),
    )
    record(
        "accumulated_resid_pos_last",
        "accumulated_resid(apply_ln=True, pos_slice=-1, return_labels=True)",
        lambda: cache.accumulated_resid(apply_ln=True, pos_slice=-1, return_labels=True),
    )
    record(
        "decompose_resid",
        "decompose_resid(apply_ln=True, return_labels=True)",
        lambda: cache.decompose_resid(apply_ln=True, return_labels=True),
    )
    record(
        "decompose_resid_raw",
        "decompose_resid(apply_ln=False, return_labels=True)",
        lambda: cache.decompose_resid(apply_ln=False, return_labels=True),
    )
    record(
        "decompose_resid_l1_mlp_input",
        "decompose_resid(layer=1, mlp_input=True, apply_ln=True, return_labels=True)",
        lambda: cache.decompose_resid(layer=1, mlp_input=True, apply_ln=True, return_labels=True),
    )
    if raw is not None:
        record(
            "apply_ln_to_stack_final",
            "apply_ln_to_stack(accumulated_resid_raw, layer=None)",
            lambda: cache.apply_ln_to_stack(raw, layer=None),
        )
        record(
            "apply_ln_to_stack_final_recompute",
            "apply_ln_to_stack(accumulated_resid_raw, layer=None, recompute_ln=True)",
            lambda: cache.apply_ln_to_stack(raw, layer=None, recompute_ln=True),
        )
        record(
            "apply_ln_to_stack_l1_ln2",
            "apply_ln_to_stack(accumulated_resid_raw, layer=1, mlp_input=True)",
            lambda: cache.apply_ln_to_stack(raw, layer=1, mlp_input=True),
        )
        record(
            "apply_ln_to_stack_final_pos_last",
            "apply_ln_to_stack(accumulated_resid_raw[:, :, -1:], layer=None, pos_slice=slice(-1, None))",
            lambda: cache.apply_ln_to_stack(raw[:, :, -1:], layer=None, pos_slice=slice(-1, None)),
        )
        record(
            "logit_attrs_accumulated",
            f"logit_attrs(accumulated_resid_raw, tokens={target})",
            lambda: cache.logit_attrs(raw, tokens=target),
        )
    record(
        "stack_activation_resid_post", 'stack_activation("resid_post")', lambda: cache.stack_activation("resid_post")
    )
    record("stack_activation_pattern", 'stack_activation("pattern")', lambda: cache.stack_activation("pattern"))
    dec = cache.decompose_resid(apply_ln=False) if "decompose_resid_raw" in out else None
    if dec is not None:
        record(
            "logit_attrs_decomposed",
            f"logit_attrs(decompose_resid(), tokens={target})",
            lambda: cache.logit_attrs(dec, tokens=target),
        )
        record(
            "logit_attrs_decomposed_diff",
            f"logit_attrs(decompose_resid(), tokens={target}, incorrect_tokens={target - 1})",
            lambda: cache.logit_attrs(dec, tokens=target, incorrect_tokens=target - 1),
        )
    record(
        "get_full_resid_decomposition",
        "get_full_resid_decomposition(expand_neurons=False, return_labels=True)",
        lambda: cache.get_full_resid_decomposition(expand_neurons=False, return_labels=True),
    )
    record(
        "stack_head_results",
        "stack_head_results(layer=-1, return_labels=True)",
        lambda: cache.stack_head_results(layer=-1, return_labels=True),
    )
    keys = {
        "resid_post,1": ("resid_post", 1),
        "pattern,1": ("pattern", 1),
        "resid_post,-1": ("resid_post", -1),
        "scale,1,ln1": ("scale", 1, "ln1"),
        "q,0": ("q", 0),
        "scale": "scale",
        "k6": "k6",
        "hook_embed": "hook_embed",
    }
    meta["getitem"] = {}
    for label, key in keys.items():
        try:
            t = cache[key]
            hits = [k for k in cache.keys() if cache[k] is t]
            meta["getitem"][label] = hits[0] if hits else "<not identical to any key>"
        except Exception as exc:  # noqa: BLE001
            meta["getitem"][label] = f"{type(exc).__name__}: {exc}"[:200]
    return out, meta


def goldens_for(family: str, folder: str, out_dir: Path) -> Path:
    from safetensors.torch import save_file
    from transformer_lens.utilities import get_act_name

    import transformer_lens
    import transformers

    cfg = json.loads((Path(folder) / "config.json").read_text())
    bridge = boot_llada(folder) if family == "llada" else boot_dream(folder)
    hub = bridge.original_model
    padded = family == "llada"  # Dream's forward takes a 4-D mask + position ids, not a [B, P] mask
    ids, mask = make_inputs(cfg, padded)
    kwargs = {"attention_mask": mask} if padded else {}
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(ids, **kwargs)
        hub_logits = (hub(input_ids=ids, attention_mask=mask) if padded else hub(ids)).logits
    target = int(logits[0, -1].argmax())
    tensors = {"input_ids": ids, "attention_mask": mask, "logits": logits.float().clone()}
    names = list(cache.keys())
    stored_as: dict[str, str] = {}  # hook name -> the first name in cache order carrying an equal tensor
    for name in names:
        t = cache[name].detach().float().contiguous()
        same = next(
            (
                s
                for s in dict.fromkeys(stored_as.values())
                if tensors[f"cache.{s}"].shape == t.shape and torch.equal(tensors[f"cache.{s}"], t)
            ),
            None,
        )
        stored_as[name] = same or name
        if same is None:
            tensors[f"cache.{name}"] = t.clone()
    calls, call_meta = tl_calls(bridge, cache, target)
    tensors.update({f"acache.{k}": v for k, v in calls.items()})
    from safetensors.torch import load_file

    for name, p in load_file(str(Path(folder) / "model.safetensors")).items():  # hub names, not the bridge's
        if is_norm_weight(name):
            tensors[f"weights.{name}"] = p.float().contiguous()
    unembed = hub.model.transformer.ff_out.weight if family == "llada" else hub.lm_head.weight
    w_u_is_unembed_t = bool(torch.equal(bridge.W_U.detach(), unembed.detach().T))
    act_names = {}
    for case in ACT_NAME_CASES:
        try:
            act_names[json.dumps(case)] = get_act_name(*case)
        except Exception as exc:  # noqa: BLE001
            act_names[json.dumps(case)] = f"{type(exc).__name__}: {exc}"
    cfg_fields = {
        k: getattr(bridge.cfg, k, None)
        for k in (
            "n_layers",
            "d_model",
            "n_heads",
            "d_head",
            "d_mlp",
            "d_vocab",
            "d_vocab_out",
            "n_ctx",
            "n_key_value_heads",
            "normalization_type",
            "final_rms",
            "positional_embedding_type",
            "attention_dir",
            "default_prepend_bos",
            "default_padding_side",
            "gated_mlp",
            "act_fn",
            "eps",
            "use_attn_result",
            "architecture",
        )
    }
    meta = {
        "family": family,
        "padded": padded,
        "target_token": target,
        "seq": SEQ,
        "names": names,
        "stored_as": stored_as,
        "shapes": {n: list(cache[n].shape) for n in names},
        "get_act_name": act_names,
        "cfg": {
            k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in cfg_fields.items()
        },
        "versions": {
            "transformer_lens": transformer_lens.__version__ if hasattr(transformer_lens, "__version__") else "4.3.0",
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "logits_max_abs_diff_vs_hub": float((logits - hub_logits).abs().max()),
        "W_U_is_unembed_weight_T": w_u_is_unembed_t,
        # Dream's adapter keeps HF's attention and fires both hooks post hoc on the returned softmax weights:
        # there `hook_attn_scores` carries the pattern, and edits to either never reach the output.
        "attn_scores_equals_pattern": all(
            torch.equal(cache["attn_scores", layer], cache["pattern", layer]) for layer in range(bridge.cfg.n_layers)
        ),
        **call_meta,
    }
    path = out_dir / f"tl_goldens_{family}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"meta": json.dumps(meta)})
    print(
        f"wrote {path} ({path.stat().st_size} bytes): {len(names)} hook names, "
        f"{len(calls)} cache-method outputs, errors: {sorted(call_meta['errors'])}, "
        f"bridge vs hub logits max |diff| {meta['logits_max_abs_diff_vs_hub']:.2e}"
    )
    return path


def goldens(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for family, folder in (("llada", args.llada), ("dream", args.dream)):
        if folder:
            goldens_for(family, folder, out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="project venv: write the tiny models in hub layout with the remote code")
    ex.add_argument("--out", required=True)
    ex.add_argument("--llada-ref", help="folder with the hub's modeling_llada.py + configuration_llada.py")
    ex.add_argument("--dream-ref", help="folder with modeling_dream.py + configuration_dream.py + generation_utils.py")
    go = sub.add_parser("goldens", help="scratch venv with transformer-lens 4.3: run TL's bridge, write fixtures")
    go.add_argument("--llada", help="exported llada folder")
    go.add_argument("--dream", help="exported dream folder")
    go.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
    args = ap.parse_args()
    export(args) if args.cmd == "export" else goldens(args)


if __name__ == "__main__":
    main()
