"""The README tour runs as written, on the packaged organism."""

import re
import runpy
from pathlib import Path

import pytest

from mdm_lens.organisms import available

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.skipif("tiny-if" not in available(), reason="the tiny-if organism is not packaged")
def test_tour_runs(tmp_path, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "tour.py"  # a real file: nnsight reads the `with` block's source
    script.write_text(code)
    ns = runpy.run_path(str(script), run_name="__main__")
    assert len(ns["saved"]) == 3 and ns["saved"][0].shape[-1] == ns["model"].site(ns["site"]).width
    assert (tmp_path / "lowercase.safetensors").stat().st_size > 0
    assert (tmp_path / "moments.png").stat().st_size > 0 and (tmp_path / "effects.png").stat().st_size > 0


def test_readme_has_the_two_commands():
    text = README.read_text()
    assert "pip install torch==2.13.0 && pip install -e . && mdm-lens demo" in text
    assert "pip install torch==2.13.0 && pip install -e '.[dev]' && python -m pytest -q" in text
