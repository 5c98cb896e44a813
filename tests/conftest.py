import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_llada():
    from mdm_lens import HookedMDM
    from mdm_lens.loading import build_test_tokenizer, tiny_config
    cfg = tiny_config("llada")
    model = HookedMDM.from_config(cfg, tokenizer=build_test_tokenizer(style="llada", vocab_size=cfg["vocab_size"]), seed=0)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_dream():
    from mdm_lens import HookedMDM
    from mdm_lens.loading import build_test_tokenizer, tiny_config
    cfg = tiny_config("dream")
    model = HookedMDM.from_config(cfg, tokenizer=build_test_tokenizer(style="dream", vocab_size=cfg["vocab_size"]), seed=0)
    return model.eval()
