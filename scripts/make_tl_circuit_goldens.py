"""Regenerate tests/fixtures/tl_circuit_goldens_{llada,dream}.safetensors: TransformerLens 4.3's circuit surface
(W_Q/W_K/W_V/W_O, biases, QK/OV factored matrices, hook_z, `compute_head_results`, `add_hook`/`reset_hooks`) on
the weights of mdm-lens's seeded tiny models.

Run in a scratch venv with `transformer-lens==4.3.0` (transformers 5.25 here) and this checkout on PYTHONPATH:

    PYTHONPATH=. python scripts/make_tl_circuit_goldens.py [--out tests/fixtures]

Why not the hub's remote code (as scripts/make_tl_goldens.py does): these are weight-layout and per-head facts,
and TL's bridge gives them for the transformers-native architectures whose state dicts are the same tensors under
other names — Dream's checkpoint IS a Qwen2ForCausalLM state dict, LLaDA's a LlamaForCausalLM one renamed
(`LLADA_TO_LLAMA`). The forward is made bidirectional by an all-zero 4-D additive mask with eager attention; the
fixture stores the bridge's logits, and the test first checks that mdm-lens's forward on those weights equals them,
which also proves the renaming (a wrong layout cannot give the same logits).

mdm-lens is imported only to build the seeded weights (`build_random_model(tiny_config(f), seed=0)` with the norm
weights perturbed as in make_tl_goldens.py, stored as `weights.<hub name>`); every other tensor is TL's.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

import torch

SEQ = 7
LLADA_TO_LLAMA = [  # LLaDA hub name pattern -> transformers Llama name
    (r"model\.transformer\.wte\.weight", "model.embed_tokens.weight"),
    (r"model\.transformer\.ln_f\.weight", "model.norm.weight"),
    (r"model\.transformer\.ff_out\.weight", "lm_head.weight"),
    (r"model\.transformer\.blocks\.(\d+)\.attn_norm\.weight", r"model.layers.\1.input_layernorm.weight"),
    (r"model\.transformer\.blocks\.(\d+)\.ff_norm\.weight", r"model.layers.\1.post_attention_layernorm.weight"),
    (r"model\.transformer\.blocks\.(\d+)\.([qkv])_proj\.weight", r"model.layers.\1.self_attn.\2_proj.weight"),
    (r"model\.transformer\.blocks\.(\d+)\.attn_out\.weight", r"model.layers.\1.self_attn.o_proj.weight"),
    (r"model\.transformer\.blocks\.(\d+)\.ff_proj\.weight", r"model.layers.\1.mlp.gate_proj.weight"),
    (r"model\.transformer\.blocks\.(\d+)\.up_proj\.weight", r"model.layers.\1.mlp.up_proj.weight"),
    (r"model\.transformer\.blocks\.(\d+)\.ff_out\.weight", r"model.layers.\1.mlp.down_proj.weight"),
]


def seeded_state(family: str) -> tuple[dict, dict[str, torch.Tensor]]:
    from make_tl_goldens import perturb_norms

    from mdm_lens.loading import build_random_model
    from mdm_lens.testing import tiny_config

    cfg = tiny_config(family)
    model = build_random_model(cfg, seed=0)
    perturb_norms(model)
    return cfg, {k: v.detach().clone() for k, v in model.state_dict().items()}


def hf_twin(family: str, cfg: dict, state: dict[str, torch.Tensor]):
    """The transformers-native model holding the same tensors (eager attention, so a 4-D mask is used as given)."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    if family == "dream":
        keep = {
            k: cfg[k]
            for k in (
                "hidden_size",
                "intermediate_size",
                "num_attention_heads",
                "num_hidden_layers",
                "num_key_value_heads",
                "rms_norm_eps",
                "rope_theta",
                "vocab_size",
                "max_position_embeddings",
                "tie_word_embeddings",
            )
        }
        hf, sd = Qwen2ForCausalLM(Qwen2Config(**keep, attn_implementation="eager")), state
    else:
        hc = LlamaConfig(
            hidden_size=cfg["d_model"],
            intermediate_size=cfg["mlp_hidden_size"],
            num_attention_heads=cfg["n_heads"],
            num_key_value_heads=cfg["n_kv_heads"],
            num_hidden_layers=cfg["n_layers"],
            rms_norm_eps=cfg["rms_norm_eps"],
            rope_theta=cfg["rope_theta"],
            vocab_size=cfg["vocab_size"],
            tie_word_embeddings=False,
            max_position_embeddings=cfg["max_sequence_length"],
            attention_bias=False,
            mlp_bias=False,
            attn_implementation="eager",
        )
        hf, sd = LlamaForCausalLM(hc), {}
        for name, t in state.items():
            new = next(re.sub(p, r, name) for p, r in LLADA_TO_LLAMA if re.fullmatch(p, name))
            sd[new] = t
    hf.load_state_dict(sd, strict=True)
    return hf.eval()


def boot(family: str, hf) -> object:
    from transformer_lens.model_bridge import TransformerBridge

    folder = Path(tempfile.mkdtemp(prefix=f"tlc-{family}-"))
    from mdm_lens.tiny_tokenizer import build_test_tokenizer

    hf.save_pretrained(folder)
    build_test_tokenizer(style=family, vocab_size=hf.config.vocab_size).save_pretrained(folder)
    return TransformerBridge.boot_transformers(str(folder), device="cpu", hf_model=hf)


def goldens_for(family: str, out_dir: Path) -> Path:
    from safetensors.torch import save_file

    import transformers

    cfg, state = seeded_state(family)
    bridge = boot(family, boot_hf := hf_twin(family, cfg, state))
    del boot_hf
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 250, (2, SEQ), generator=gen)
    ids[:, -2:] = cfg["mask_token_id"]
    bidir = torch.zeros(2, 1, SEQ, SEQ)  # additive: every query sees every key
    t: dict[str, torch.Tensor] = {"input_ids": ids}
    errors: dict[str, str] = {}
    for name, p in state.items():
        if name.endswith(".weight") and ("norm" in name or ".ln_f." in name):
            t[f"weights.{name}"] = p.float().contiguous()
    # W_in / W_gate / W_out are held by tests/test_tl_parity.py
    for attr in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O", "b_in", "b_out"):
        try:
            v = getattr(bridge, attr)
        except Exception as exc:  # noqa: BLE001 - TL's refusal is itself the golden
            errors[attr] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        if v is None:
            errors[attr] = "None"
            continue
        t[f"param.{attr}"] = v.detach().float().contiguous().clone()
    qk, ov = bridge.QK, bridge.OV
    for label, fm in (("QK", qk), ("OV", ov)):
        t[f"fm.{label}.S"] = fm.S.detach().clone()
        t[f"fm.{label}.norm"] = fm.norm().detach().clone()
        head = fm[1, 2]
        t[f"fm.{label}.1_2.AB"] = head.AB.detach().clone()
        t[f"fm.{label}.1_2.eigenvalues"] = torch.view_as_real(head.eigenvalues.detach().clone())
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(ids, attention_mask=bidir)
        t["logits"] = logits.float().clone()
        for layer in range(bridge.cfg.n_layers):
            t[f"cache.blocks.{layer}.attn.hook_z"] = cache[f"blocks.{layer}.attn.hook_z"].float().clone()
            t[f"cache.blocks.{layer}.hook_attn_out"] = cache[f"blocks.{layer}.hook_attn_out"].float().clone()
        cache.compute_head_results()
        for layer in range(bridge.cfg.n_layers):
            t[f"result.blocks.{layer}.attn.hook_result"] = cache[f"blocks.{layer}.attn.hook_result"].float().clone()
        t["stack_head_results"] = cache.stack_head_results(layer=-1).float().clone()

        def ablate_head_1(z, hook):
            z[:, :, 1] = 0.0
            return z

        def double_mlp(x, hook):
            return x * 2

        bridge.add_hook("blocks.0.attn.hook_z", ablate_head_1)
        t["hooks.added"] = bridge(ids, attention_mask=bidir).float().clone()
        bridge.add_hook(lambda n: n == "blocks.1.hook_mlp_out", double_mlp, is_permanent=True)
        t["hooks.added_and_permanent"] = bridge(ids, attention_mask=bidir).float().clone()
        bridge.reset_hooks()
        t["hooks.after_reset"] = bridge(ids, attention_mask=bidir).float().clone()
        bridge.reset_hooks(including_permanent=True)
        t["hooks.after_reset_permanent"] = bridge(ids, attention_mask=bidir).float().clone()
    meta = {
        "family": family,
        "seq": SEQ,
        "errors": errors,
        "n_kv_heads": bridge.cfg.n_key_value_heads,
        "versions": {"transformer_lens": "4.3.0", "transformers": transformers.__version__, "torch": torch.__version__},
        "QK_shape": list(qk.shape),
        "OV_shape": list(ov.shape),
        "hooks": {
            "added": "add_hook('blocks.0.attn.hook_z', zero head 1)",
            "added_and_permanent": "+ add_hook(lambda n: n == 'blocks.1.hook_mlp_out', x * 2, is_permanent=True)",
            "after_reset": "reset_hooks()",
            "after_reset_permanent": "reset_hooks(including_permanent=True)",
        },
    }
    path = out_dir / f"tl_circuit_goldens_{family}.safetensors"
    save_file({k: v.contiguous() for k, v in t.items()}, str(path), metadata={"meta": json.dumps(meta)})
    print(f"wrote {path} ({path.stat().st_size} bytes); TL refused: {errors}")
    return path


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))
    ap.add_argument("--family", choices=["llada", "dream"], action="append")
    args = ap.parse_args()
    torch.manual_seed(0)
    for family in args.family or ["llada", "dream"]:
        goldens_for(family, Path(args.out))


if __name__ == "__main__":
    main()
