"""mdm_lens.testing: the helpers users test with build models that load, tokenize and generate offline."""

import pytest
import torch

from mdm_lens import HookedMDM
from mdm_lens.testing import build_test_tokenizer, hub_key_names, save_tiny_checkpoint, tiny_config, tiny_model


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_checkpoint_round_trip(tmp_path, family):
    model = tiny_model(family, seed=3)
    folder = save_tiny_checkpoint(tmp_path / family, family, seed=3)
    loaded = HookedMDM.from_pretrained(str(folder))
    assert loaded.spec.name == family and loaded.mask_id == model.mask_id == model.config["mask_token_id"]
    assert set(loaded.model.state_dict()) == set(hub_key_names(family, loaded.model.cfg))
    for k, v in model.model.state_dict().items():
        assert torch.equal(v, loaded.model.state_dict()[k]), k
    ids = loaded.tokenizer("hello world", add_special_tokens=False)["input_ids"]
    assert loaded.tokenizer.decode(ids) == "hello world" and max(ids) < model.config["vocab_size"]


def test_tokenizer_ids_agree_with_the_config():
    for style in ("llada", "dream"):
        cfg, tok = tiny_config(style), build_test_tokenizer(style=style)
        assert tok.mask_token_id == cfg["mask_token_id"] and tok.eos_token_id == cfg["eos_token_id"]
        assert tok.convert_ids_to_tokens(cfg["mask_token_id"]) in ("<|mdm_mask|>", "<|mask|>")


def test_overrides_and_unknown_family():
    assert tiny_config("llada", n_layers=3)["n_layers"] == 3
    assert tiny_model("llada", n_layers=3).n_layers == 3
    with pytest.raises(ValueError, match="no tiny config for family 'gpt2'.*llada"):
        tiny_config("gpt2")
    with pytest.raises(ValueError, match="no hub key list"):
        hub_key_names("diffusion_gemma", None)
