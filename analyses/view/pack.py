"""Traces -> the compact JSON document the page reads, and the page itself (one file, scripts and styles inline).

Compact: every id is an index into one shared token table (`vocab`, only the tokens that occur), arrays are
little-endian typed arrays in base64 (ids as uint16 while the table has < 65536 entries, else uint32;
probabilities and attention weights as uint8, p * 255 rounded: 0.002 resolution, plenty for colour and two
digits). A 256-token, 256-step trace at top-5 is ~1.6 MB of arrays before base64.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np
import torch

from .extract import Trace, response_cut, token_pieces

FORMAT_VERSION = 1


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _u8(p: torch.Tensor) -> dict:
    q = (p.float().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return {"dtype": "u8", "shape": list(q.shape), "b64": _b64(q)}


def _ints(t: torch.Tensor | np.ndarray, wide: bool) -> dict:
    a = np.asarray(t, dtype="<u4" if wide else "<u2")
    return {"dtype": "u32" if wide else "u16", "shape": list(a.shape), "b64": _b64(a)}


class _Vocab:
    """Vocabulary ids -> indices into the page's token table."""

    def __init__(self, model, traces: Sequence[Trace]):
        parts = []
        for t in traces:
            parts += [torch.as_tensor(t.prompt_ids), torch.as_tensor(t.tokens), t.topk_ids.flatten().long()]
            if t.lens is not None:
                parts.append(t.lens["ids"].flatten().long())
        self.ids = torch.unique(torch.cat([p.long().flatten() for p in parts]))
        self.wide = len(self.ids) >= 65536
        tok = model.tokenizer
        self.strings = [
            tok.decode([i], skip_special_tokens=False) if tok is not None else str(i) for i in self.ids.tolist()
        ]

    def index(self, ids) -> np.ndarray:
        t = torch.as_tensor(ids).long()
        return torch.searchsorted(self.ids, t).numpy()


def _run(model, t: Trace, v: _Vocab) -> dict[str, Any]:
    run: dict[str, Any] = {
        "label": t.label,
        "text": t.text,
        "n_steps": t.n_steps,
        "gen": len(t.tokens),
        "k": int(t.topk_ids.shape[-1]),
        "tokens": v.index(t.tokens).tolist(),
        "pieces": token_pieces(model, t),
        "cut": response_cut(t),
        "decode_step": t.decode_step,
        "settings": t.settings,
        "damage": t.damage,
        "topk_ids": _ints(v.index(t.topk_ids), v.wide),
        "topk_p": _u8(t.topk_probs),
    }
    if t.lens is not None:
        run["lens"] = {
            "steps": t.lens["steps"],
            "layers": t.lens["layers"],
            "ids": _ints(v.index(t.lens["ids"]), v.wide),
            "p": _u8(t.lens["probs"]),
        }
    if t.attention is not None:
        a = t.attention
        run["attention"] = {
            "steps": a["steps"],
            "layers": a["layers"],
            "n_heads": a["n_heads"],
            "keys": _ints(a["keys"], False),
            "w": _u8(a["weights"]),
        }
    if t.features is not None:
        f = t.features
        run["features"] = {
            "name": f["name"],
            "site": f["site"],
            "labels": {str(k): s for k, s in f["labels"].items()},
            "ids": _ints(f["ids"], True),
            "acts": {
                "dtype": "f32",
                "shape": list(f["acts"].shape),
                "b64": _b64(f["acts"].float().numpy().astype("<f4")),
            },
        }
    return run


def document(model, groups: Sequence[Sequence[Trace]], title: str) -> dict[str, Any]:
    """The page's data: one group per prompt, each one run or an unsteered / steered pair."""
    traces = [t for g in groups for t in g]
    v = _Vocab(model, traces)
    out = []
    for g in groups:
        runs = [_run(model, t, v) for t in g]
        diff = []
        if len(g) == 2:
            diff = [i for i, (a, b) in enumerate(zip(g[0].tokens, g[1].tokens)) if a != b]
        out.append(
            {"prompt": g[0].prompt, "prompt_tokens": v.index(g[0].prompt_ids).tolist(), "runs": runs, "diff": diff}
        )
    return {
        "version": FORMAT_VERSION,
        "title": title,
        "model": str(model.name_or_path or model.spec.name),
        "family": model.spec.name,
        "n_layers": model.n_layers,
        "vocab": v.strings,
        "vocab_ids": v.ids.tolist(),
        "groups": out,
    }


def _asset(name: str) -> str:
    return resources.files("analyses.view").joinpath(name).read_text(encoding="utf-8")


def page(doc: dict[str, Any]) -> str:
    """One self-contained HTML file: no network, works from file://."""
    data = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    data = data.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    parts = {"TITLE": html.escape(doc["title"]), "CSS": _asset("viewer.css"), "JS": _asset("viewer.js"), "DATA": data}
    return re.sub(r"\{\{(TITLE|CSS|JS|DATA)\}\}", lambda m: parts[m.group(1)], _asset("viewer.html"))
