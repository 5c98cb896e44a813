"""Regenerate docs/img/viewer.png: the trace viewer on the embedded organism (tiny-mdm), unsteered vs a Linear-ACT-like
shift at layer 2, rendered by headless Chromium at a middle step with one position selected.

    python scripts/make_viewer_screenshot.py            # needs Debian's `chromium`
"""

import os
import sys

import torch


def main(out: str = "docs/img/viewer.png") -> None:
    from analyses.bench.view import run_page
    from analyses.view import render
    from interventions import MeanACT, Plan
    from mdm_lens import HookedMDM

    model = HookedMDM.from_pretrained("tiny-mdm")
    site = "blocks.2.hook_resid_post"
    g = torch.Generator().manual_seed(0)
    d = model.site(site).width
    A = torch.randn(16, d, generator=g, dtype=torch.float64)
    plan = Plan({site: MeanACT.fit(A, A + 6.0 * torch.randn(d, generator=g, dtype=torch.float64))})
    view = render(model, ["Describe the sea."], plan=plan, damage_mc=16, steered_label="steered (MeanACT, L2)")
    driver = """var s = document.getElementById('step'); s.value = 16; s.dispatchEvent(new Event('input'));
                document.querySelectorAll('.tok')[5].click(); return {};"""
    res = run_page(view.html, driver, screenshot=out, size=(1500, 1250))
    if res["errors"] or res["console"]:
        sys.exit(f"page errors: {res['errors'] or res['console']}")
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main(*sys.argv[1:])
