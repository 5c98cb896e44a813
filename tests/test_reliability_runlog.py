"""Issue 20, points 1, 2, 5, 13: the run log never mixes configs, claims its folder atomically and late (an
option refused before any work leaves the folder free), skips damaged lines naming them; every project write
goes through the atomic writer."""

import json
import os
import re
from pathlib import Path

import pytest

from analyses.studies.runlog import ConfigMismatch, Item, RunLog, dist_env

ROOT = Path(__file__).resolve().parents[1]


def _run(folder, config, n=2, fail=False):
    log = RunLog(str(folder), config, rank=0, world=1)

    def work(it):
        if fail:
            raise ValueError("threshold=1.5 is invalid")
        return [{"text": f"{config['seed']}-{it.key[0]}-{j}"} for j in range(it.n)]

    return log.run([Item((i,), n) for i in range(2)], work, progress=False)


def test_records_carry_the_config_hash_so_a_lost_config_json_cannot_mix(tmp_path):
    _run(tmp_path, {"seed": 0})
    os.remove(tmp_path / "config.json")
    with pytest.raises(ConfigMismatch, match=r"generations.jsonl line 1 holds a record of another config"):
        _run(tmp_path, {"seed": 1})
    assert _run(tmp_path, {"seed": 0})[0]["text"] == "0-0-0"  # the same config still resumes


def test_two_runs_opening_one_fresh_folder_cannot_both_claim_it(tmp_path):
    a = RunLog(str(tmp_path), {"seed": 0}, rank=0, world=1)
    b = RunLog(str(tmp_path), {"seed": 1}, rank=0, world=1)  # both passed the existence check
    a.append(Item(("x",), 1), [{"t": 0}])
    with pytest.raises(ConfigMismatch, match=r"another config .*seed: 0 -> 1"):
        b.append(Item(("y",), 1), [{"t": 1}])
    assert json.loads((tmp_path / "config.json").read_text())["config"] == {"seed": 0}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_an_option_refused_before_any_record_leaves_the_folder_free(tmp_path):
    with pytest.raises(ValueError, match="threshold"):
        _run(tmp_path, {"seed": 0, "threshold": 1.5}, fail=True)
    assert not (tmp_path / "config.json").exists()
    assert _run(tmp_path, {"seed": 0, "threshold": 0.9})  # the corrected run is accepted


def test_damaged_lines_are_skipped_with_file_and_line(tmp_path):
    _run(tmp_path, {"seed": 0})
    path = tmp_path / "generations.jsonl"
    lines = path.read_bytes().split(b"\n")
    lines[1:1] = [b"[1, 2]", b'{"no": "item"}', b"\xff\xfe{", b'{"item": "x", "index": "0"}']
    path.write_bytes(b"\n".join(lines))
    with pytest.warns(UserWarning, match=r"generations.jsonl: skipped 4 unreadable line\(s\) \(line 2, 3, 4, 5"):
        out = _run(tmp_path, {"seed": 0})
    assert [r["text"] for r in out] == ["0-0-0", "0-0-1", "0-1-0", "0-1-1"]


@pytest.mark.parametrize("body", ["{not json", "[1, 2]", '{"hash": 5, "config": {}}', "\udcff"])
def test_damaged_config_json_is_named_with_the_fix(tmp_path, body):
    (tmp_path / "config.json").write_text(body, errors="surrogateescape")
    with pytest.raises(ConfigMismatch, match=r"config.json is damaged .*delete the folder to start over"):
        RunLog(str(tmp_path), {"seed": 0}, rank=0, world=1)


def test_world_size_that_is_not_an_integer(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match=r"WORLD_SIZE='two' \(from the environment\) is not an integer"):
        dist_env()


def test_every_project_write_goes_through_the_atomic_writer():
    """No plain open(..., 'w'), write_text, fixed '.tmp' names or direct savefig/save_file outside safefile."""
    pattern = re.compile(
        r"open\([^)]*,\s*[\"'](w|wb|w\+)[\"']|\.write_text\(|\.write_bytes\(|\.tmp[\"']"
        r"|fig\.savefig\(|\bsave_file\(|torch\.save\("
    )
    hits = []
    for pkg in ("mdm_lens", "analyses", "interventions"):
        for f in (ROOT / pkg).rglob("*.py"):
            if f.name == "safefile.py" or f.name == "runlog_io.py":
                continue
            for n, line in enumerate(f.read_text().splitlines(), 1):
                code = line.split("#")[0]
                if pattern.search(code) and not re.search(r"\btmp\b", code):  # writers into a staged temporary
                    hits.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "\n".join(hits)
