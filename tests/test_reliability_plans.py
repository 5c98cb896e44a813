"""Issue 20, points 4 and 16: plan files saved through a symlink write its target; a plan file whose recorded
model or map header has the wrong type or width is refused naming the file, not with AttributeError or torch's
reshape error."""

import json

import pytest
import torch
from safetensors import safe_open

from interventions import Plan

from test_reliability_files import _rewrite, plan_file  # noqa: F401  (the fixture)


@pytest.mark.parametrize(
    "model, msg",
    [
        ([1], r"its 'model' entry must be a JSON object"),
        ({"family": 5}, r"its 'model' entry has family 5, not a string"),
        (
            {"family": "llada", "site_widths": {"blocks.0.hook_resid_post": "256"}},
            r"its 'model' entry has site_widths that are not site -> positive integer",
        ),
    ],
)
def test_recorded_model_of_the_wrong_type_names_the_file(plan_file, model, msg):  # noqa: F811
    _rewrite(plan_file, {"model": json.dumps(model)})
    with pytest.raises(ValueError, match=msg) as err:
        Plan.load(plan_file)
    assert str(plan_file) in str(err.value)


@pytest.mark.parametrize("d", [7, "6", True])
def test_map_header_width_that_does_not_match_its_tensors(plan_file, d):  # noqa: F811
    with safe_open(str(plan_file), "pt") as f:
        sites = json.loads(f.metadata()["sites"])
    sites["blocks.0.hook_resid_post"][0]["inner"]["d"] = d
    _rewrite(plan_file, {"sites": json.dumps(sites)})
    with pytest.raises(ValueError, match=r"blocks.0.hook_resid_post::0::inner: header (width d=|kind=)") as err:
        Plan.load(plan_file)
    assert str(plan_file) in str(err.value)


def test_saving_a_plan_through_a_symlink_writes_its_target(plan_file, tmp_path):  # noqa: F811
    target = tmp_path / "real.safetensors"
    target.write_bytes(plan_file.read_bytes())
    link = tmp_path / "link.safetensors"
    link.symlink_to(target)
    plan = Plan.load(plan_file)
    plan.maps["blocks.0.hook_resid_post"][0].inner.beta.add_(1.0)
    plan.save(link)
    assert link.is_symlink()
    back = Plan.load(target).maps["blocks.0.hook_resid_post"][0].inner.beta
    assert torch.equal(back, plan.maps["blocks.0.hook_resid_post"][0].inner.beta)
