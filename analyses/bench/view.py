"""`mdm-lens bench view`: the trace viewer's size and its render time in a real browser (headless Chromium).

A `gen_length`-token, `steps`-step generation (default 256 x 256, one token per step) is rendered to one HTML page;
the page is then loaded by headless Chromium with a small driver script appended (never part of the page itself)
that reports the viewer's own render time (`performance.now()` when the viewer finished building: HTML parse,
JSON parse, base64 decode, grid paint, DOM for every position), then drags the step slider over every step and
times that too. Reported: file size (MB), render ms, per-step slider ms, and Chromium's wall time.

The Chromium helpers here are shared with tests/test_view.py: `chromium()` finds the binary (Debian's `chromium`
package), `run_page(path, driver_js)` loads a copy of the page with a console/error capture first in <head> and
the driver last in <body>, and returns the JSON the driver left in `<pre id="driver-result">`.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from mdm_lens.safefile import write_text_atomic

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)
CAPTURE = (
    "<script>window.__errors=[];window.addEventListener('error',function(e){__errors.push('error: '+e.message)});"
    "['error','warn'].forEach(function(k){var f=console[k];console[k]=function(){__errors.push(k+': '+"
    "Array.prototype.join.call(arguments,' '));f.apply(console,arguments)}});</script>"
)


def chromium() -> str | None:
    """Path of a Chromium binary (Debian's `chromium`, or `chromium-browser` / `google-chrome`), None if absent."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def driver_page(page: str, driver_js: str) -> str:
    """The page with the error capture first and the driver last; the driver writes JSON into #driver-result."""
    out = page.replace("<head>", "<head>\n" + CAPTURE, 1)
    wrapped = (
        "<script>(function(){var R;try{R=(function(){" + driver_js + "})();}catch(e){R={driver_error:String(e)};}"
        "R.errors=window.__errors;var pre=document.createElement('pre');pre.id='driver-result';"
        "pre.style.display='none';pre.textContent=JSON.stringify(R);document.body.appendChild(pre);})();</script>\n"
    )
    i = out.rindex("</body>")
    return out[:i] + wrapped + out[i:]


def run_page(
    page: str,
    driver_js: str,
    *,
    screenshot: str | None = None,
    size: tuple[int, int] = (1400, 1100),
    timeout: float = 120.0,
) -> dict:
    """Load `page` (HTML text) with the driver in headless Chromium from a file:// URL; returns the driver's JSON
    plus `console` (the console lines Chromium logged) and `wall_s`. With `screenshot`, a second load writes a
    PNG of the state the driver left."""
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("no chromium binary on PATH: install Debian's `chromium` package")
    with tempfile.TemporaryDirectory(prefix="mdm-view-") as tmp:
        path = os.path.join(tmp, "page.html")
        write_text_atomic(driver_page(page, driver_js), path)
        url = "file://" + path
        base = [
            exe,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={os.path.join(tmp, 'profile')}",
            f"--window-size={size[0]},{size[1]}",
        ]
        t0 = time.perf_counter()
        proc = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=timeout, check=False)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}")
        m = re.search(r'<pre id="driver-result"[^>]*>(.*?)</pre>', proc.stdout, re.DOTALL)
        if m is None:
            raise RuntimeError(
                f"the driver wrote no result (the page's script did not run?); stderr: {proc.stderr[-2000:]}"
            )
        result = json.loads(html.unescape(m.group(1)))
        result["console"] = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]
        result["wall_s"] = round(wall, 2)
        if screenshot is not None:
            shot = subprocess.run(
                [*base, f"--screenshot={os.path.abspath(screenshot)}", url],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if shot.returncode != 0 or not os.path.isfile(screenshot):
                raise RuntimeError(f"chromium wrote no screenshot: {shot.stderr[-2000:]}")
        return result


SLIDE_ALL = """
var root = document.getElementById('mdm-root'), s = document.getElementById('step');
var n = +s.max + 1, t0 = performance.now();
for (var i = 0; i < n; i++) { s.value = i; s.dispatchEvent(new Event('input')); }
return {ready: root.dataset.ready, render_ms: +root.dataset.renderMs, slider_ms_per_step: (performance.now() - t0) / n,
        steps: n, positions: document.querySelectorAll('.gen-panel')[0].dataset.positions};
"""


def run_view_bench(
    model: str | None = None, gen_length: int = 256, steps: int = 256, prompt: str | None = None
) -> dict:
    """File size and Chromium render time of one `gen_length` x `steps` trace (JSON-ready dict)."""
    from mdm_lens import HookedMDM
    from mdm_lens.organisms import default_organism

    from ..view import render

    name = model or "tiny-mdm"
    m = HookedMDM.from_pretrained(name if name != "default" else default_organism())
    sampler: dict[str, int] = {m.spec.length_key: gen_length, "steps": steps}
    if m.spec.sampler == "llada":
        sampler["block_length"] = gen_length
    t0 = time.perf_counter()
    view = render(m, prompt or "Write a long story about a cat who learns to sail.", **sampler)  # type: ignore[arg-type]
    build_s = time.perf_counter() - t0
    trace = view.traces[0][0]
    res = run_page(view.html, SLIDE_ALL)
    if res.get("errors") or res.get("driver_error"):
        raise RuntimeError(f"the page raised errors in Chromium: {res.get('errors') or res.get('driver_error')}")
    return {
        "bench": "view",
        "model": name,
        "gen_length": gen_length,
        "steps": trace.n_steps,
        "top_k": int(trace.topk_ids.shape[-1]),
        "file_mb": round(view.size_bytes / 1e6, 3),
        "render_ms": res["render_ms"],
        "slider_ms_per_step": round(res["slider_ms_per_step"], 2),
        "chromium_wall_s": res["wall_s"],
        "build_s": round(build_s, 2),
        "targets": {"render_ms": 2000, "file_mb": 5},
        "ok": res["render_ms"] < 2000 and view.size_bytes < 5e6,
    }
