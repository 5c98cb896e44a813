import pytest
import torch

torch.set_num_threads(2)


def _never_predict_mask(model):
    """A trained MDM never predicts [MASK]; a random one may, and then never unmasks. Zero its logit row."""
    head = model.model.get_submodule(model.site("hook_logits").linear)
    with torch.no_grad():
        head.weight[model.mask_id] = 0
    return model


@pytest.fixture(scope="session")
def tiny_llada():
    from mdm_lens import HookedMDM
    from mdm_lens.testing import build_test_tokenizer, tiny_config

    cfg = tiny_config("llada")
    model = HookedMDM.from_config(
        cfg, tokenizer=build_test_tokenizer(style="llada", vocab_size=cfg["vocab_size"]), seed=0
    )
    return _never_predict_mask(model.eval())


@pytest.fixture(scope="session")
def tiny_dream():
    from mdm_lens import HookedMDM
    from mdm_lens.testing import build_test_tokenizer, tiny_config

    cfg = tiny_config("dream")
    model = HookedMDM.from_config(
        cfg, tokenizer=build_test_tokenizer(style="dream", vocab_size=cfg["vocab_size"]), seed=0
    )
    return _never_predict_mask(model.eval())
