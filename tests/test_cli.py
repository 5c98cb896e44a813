"""The console script on a tiny model saved in hub layout."""

import json

import pytest

from analyses.cli import main


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    from mdm_lens.testing import save_tiny_checkpoint

    return str(save_tiny_checkpoint(tmp_path_factory.mktemp("tiny-llada"), "llada"))


def test_sites_lists_canonical_names(saved_tiny, capsys):
    assert main(["sites", "--model", saved_tiny]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split("\t")[0] for line in lines]
    assert "blocks.1.hook_mlp_out" in names and "hook_logits" in names
    # token ids, embeddings, final scale / normalized / output, logits; 24 sites per block (mdm_lens.sites: 15,
    # + LLaDA's attention internals q, k, v, rot_q, rot_k, attn_scores, pattern, z, and TL's per-head result)
    assert len(names) == len(set(names)) == 6 + 2 * 24


def test_generate_prints_json_lines(saved_tiny, capsys):
    rc = main(
        [
            "generate",
            "--model",
            saved_tiny,
            "--prompt",
            "hello world",
            "--prompt",
            "the cat",
            "--gen-length",
            "4",
            "--steps",
            "4",
            "--block-length",
            "4",
        ]
    )
    assert rc == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [r["prompt"] for r in rows] == ["hello world", "the cat"]


def test_bad_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    assert main(["sites", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown model family" in err and "llada" in err
