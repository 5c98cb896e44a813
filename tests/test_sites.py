"""Sites carry their role; every name round-trips through get_act_name, for all three families."""

import pytest

from mdm_lens import HookedMDM, get_act_name
from mdm_lens.sites import GLOBAL_ROLES, LAYER_ROLES, check_roles


def _gemma():
    from mdm_lens.testing import tiny_config

    return HookedMDM.from_config(tiny_config("diffusion_gemma"))


@pytest.mark.parametrize("which", ["tiny_llada", "tiny_dream", "gemma"])
def test_every_site_has_a_role_that_round_trips(which, request):
    model = _gemma() if which == "gemma" else request.getfixturevalue(which)
    roles = [s.role for s in model.sites.values()]
    assert all(roles), [s.name for s in model.sites.values() if not s.role]
    for s in model.sites.values():
        assert get_act_name(s.role, s.layer) == s.name
        assert all(model.site(a) is s for a in s.aliases)  # an alias is the same site
    # the table is complete: every steering role at every layer, each (role, layer) once, global roles once
    pairs = [(s.role, s.layer) for s in model.sites.values()]
    assert len(pairs) == len(set(pairs))
    assert {(r, l) for r in LAYER_ROLES for l in range(model.n_layers)} <= set(pairs)
    assert {"embed", "ln_final", "logits"} <= {r for r, l in pairs if l is None} <= set(GLOBAL_ROLES)


def test_get_act_name_aliases_and_errors():
    assert get_act_name("mlp_out", 1) == "blocks.1.hook_mlp_out"  # TransformerLens' name
    assert get_act_name("pre", 0) == get_act_name("mlp_pre", 0) == "blocks.0.mlp.hook_pre"
    assert get_act_name("normalized") == "ln_final.hook_normalized"
    with pytest.raises(ValueError, match="needs a layer"):
        get_act_name("resid_post")
    with pytest.raises(KeyError, match="resid_post"):  # like TL, names are checked on use
        _gemma().site(get_act_name("resid_poost", 0))
    with pytest.raises(ValueError, match="mlp_out"):
        check_roles(["mlp_out", "mlp_outt"])


def test_site_names_by_role(tiny_llada):
    assert tiny_llada.site_names(["mlp_out", "resid_pre"]) == [
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_mlp_out",
        "blocks.1.hook_resid_pre",
        "blocks.1.hook_mlp_out",
    ]
    assert tiny_llada.site_names(["attn_out", "embed"], layers=[1]) == ["hook_embed", "blocks.1.hook_attn_out"]
    with pytest.raises(ValueError, match="mlp_out"):
        tiny_llada.site_names(["mlp_outt"])
    with pytest.raises(ValueError, match="0..1"):
        tiny_llada.site_names(["mlp_out"], layers=[2])
