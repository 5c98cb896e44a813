"""The `mdm-lens` entry: it chooses OpenMP's passive wait policy before torch loads (issue 25, point 8; measured by
`mdm-lens bench threads`), never over the user's own setting, `--help` stays torch-free, and Ctrl-C in the demo
prints one line saying how to resume."""

import os
import subprocess
import sys

CODE = (
    "import os, sys\nfrom analyses.cli import main\ntry:\n    main(['bench', '--help'])\nexcept SystemExit:\n    pass\n"
    "print('POLICY', os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n"
)


def _policy(env_extra: dict) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env_extra
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()[-1]


def test_entry_sets_passive_unless_the_user_chose():
    assert _policy({}) == "POLICY PASSIVE False"
    assert _policy({"OMP_WAIT_POLICY": "ACTIVE"}) == "POLICY ACTIVE False"


def test_too_late_once_torch_is_loaded(monkeypatch):
    import torch  # noqa: F401 - loaded: the runtime has read its policy already

    from analyses.cli.omp import prefer_passive_wait

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert prefer_passive_wait() is None and "OMP_WAIT_POLICY" not in os.environ


def test_ctrl_c_in_demo_prints_one_resume_line(monkeypatch, capsys, tmp_path):
    import analyses.studies.demo as demo
    from analyses.cli import main

    def interrupted(*a, **k):  # what a Ctrl-C mid-run raises
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_demo", interrupted)
    monkeypatch.setattr("sys.argv", ["mdm-lens", "demo", "--quick", "--out", str(tmp_path / "d")])
    assert main(["demo", "--quick", "--out", str(tmp_path / "d")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("interrupted;") and err[0].endswith(f"demo --quick --out {tmp_path}/d")


def test_bench_threads_refuses_bad_sizes_before_starting_anything():
    import pytest

    from analyses.bench.threads import run_threads_bench

    for kw, msg in (
        ({"load": 0}, "load=0 must be >= 1"),
        ({"repeats": 0}, "repeats=0"),
        ({"n_prompts": 0}, "n_prompts"),
    ):
        with pytest.raises(ValueError, match=msg):
            run_threads_bench(**kw)
