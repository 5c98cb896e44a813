"""Issue 20, points 11 and 17: loading refuses what would fail later inside torch or at generate time, naming the
file; chat=True without a chat template warns instead of silently sending raw prompts."""

import json
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from mdm_lens import HookedMDM
from mdm_lens.organisms import resolve

TINY = Path(resolve("tiny-mdm"))


@pytest.fixture
def copy(tmp_path):
    dst = tmp_path / "tiny"
    shutil.copytree(TINY, dst)
    return dst


def _edit_config(folder, **kv):
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(kv)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_empty_name_is_not_the_current_folder():
    with pytest.raises(
        ValueError,
        match=r"from_pretrained\(''\): give a model folder.*an empty name would mean the "
        r"current folder",
    ):
        HookedMDM.from_pretrained("")


def test_broken_chat_template_fails_at_load_naming_the_file(copy):
    (copy / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }")
    with pytest.raises(ValueError, match=r"chat_template.jinja does not render"):
        HookedMDM.from_pretrained(str(copy))


def test_missing_chat_template_warns_when_chat_is_asked(copy):
    (copy / "chat_template.jinja").unlink()
    model = HookedMDM.from_pretrained(str(copy))
    with pytest.warns(UserWarning, match=r"chat=True, but this tokenizer has no chat template"):
        model.masked_batch(["hello"], 4)


@pytest.mark.parametrize(
    "kv, msg",
    [
        (dict(mdm_lens_sampler=[1]), r"mdm_lens_sampler=\[1\] must be an object of sampler settings"),
        (dict(mdm_lens_sampler={"steps": 0}), r"steps=0 \(from .*config.json mdm_lens_sampler\) is invalid"),
        (dict(mask_token_id=99999), r"mask_token_id=99999 is not a token id of this model \(vocabulary \[0, "),
    ],
)
def test_config_entries_checked_at_load(copy, kv, msg):
    _edit_config(copy, **kv)
    with pytest.raises(ValueError, match=msg):
        HookedMDM.from_pretrained(str(copy))


def test_integer_tensor_where_a_weight_belongs(copy):
    path = copy / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    key = sorted(tensors)[0]
    tensors[key] = tensors[key].int()
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ValueError, match=rf"tensor '{key}' is torch.int32, but the model's parameter is floating"):
        HookedMDM.from_pretrained(str(copy))
