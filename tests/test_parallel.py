"""Data parallel runs: `accelerate launch --num_processes 2 mdm-lens experiment` (2 CPU processes, gloo) shards
the generations over the ranks and merges one result identical to a single-process run."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from mdm_lens.organisms import available

pytestmark = pytest.mark.skipif(
    "tiny-if" not in available()
    or shutil.which("accelerate") is None
    and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "accelerate")),
    reason="needs the tiny-if organism and accelerate",
)

ARGS = [
    "experiment",
    "--model",
    "tiny-if",
    "--instruction-id",
    "change_case:english_lowercase",
    "--n-calib",
    "4",
    "--n-val",
    "2",
    "--n-test",
    "3",
    "--batch-size",
    "1",
    "--lambdas",
    "0.5",
    "1.0",
    "--methods",
    "none",
    "mean_act",
    "--gen-length",
    "8",
    "--steps",
    "4",
    "--block-length",
    "8",
    "--mc-num",
    "4",
    "--mc-batch",
    "4",
]


def _bin(name):
    return os.path.join(os.path.dirname(sys.executable), name)


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _records(folder):
    recs = [json.loads(line) for line in open(os.path.join(folder, "generations.jsonl"))]
    return recs, sorted(json.dumps({k: v for k, v in r.items() if k != "rank"}, sort_keys=True) for r in recs)


def test_two_processes_merge_one_result_equal_to_one_process(tmp_path):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    subprocess.run([_bin("mdm-lens"), *ARGS, "--out", one], check=True, env=_env(), capture_output=True)
    # on a CPU box accelerate's torchrun launcher (--multi_gpu) starts the processes; they use gloo
    launch = [
        _bin("accelerate"),
        "launch",
        "--multi_gpu",
        "--no_python",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
    ]
    proc = subprocess.run([*launch, _bin("mdm-lens"), *ARGS, "--out", two], env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert open(os.path.join(one, "result.json")).read() == open(os.path.join(two, "result.json")).read()
    recs1, body1 = _records(one)
    recs2, body2 = _records(two)
    assert body1 == body2  # the same generations, each exactly once
    assert {r["rank"] for r in recs2} == {0, 1} and {r["rank"] for r in recs1} == {0}
    assert not [f for f in os.listdir(two) if f.startswith("generations.rank")]  # merged into one file
