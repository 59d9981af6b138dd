"""Queries in non-Latin scripts: a tiny multilingual model reads them, an English-only one
still runs them and says so."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import vislang
from vislang.models.registry import known_multilingual, model_records
from vislang.models.tokenizer import covered_scripts, scripts_in

from conftest import run_cli

QUERIES = {
    "Cyrillic": "собака на пляже",
    "Greek": "γάτα",
    "CJK": "猫の写真",
    "Hangul": "빨간 차",
    "Arabic": "صورة كلب",
}


@pytest.fixture(scope="module")
def multilingual_dir(tmp_path_factory):
    from vislang.models.tiny import tiny_multilingual

    return tiny_multilingual(tmp_path_factory.mktemp("tiny-multilingual"))


@pytest.fixture(scope="module")
def model(multilingual_dir):
    return vislang.load(str(multilingual_dir))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    for i in range(5):
        pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return folder


def test_scripts_in_text():
    assert scripts_in("a café, naïve 123!") == set()
    assert {s for q in QUERIES.values() for s in scripts_in(q)} == set(QUERIES)


@pytest.mark.parametrize("script", list(QUERIES))
def test_covered_scripts_tokenize_without_unknown_tokens(model, script):
    tokens = model.tokenize(QUERIES[script])[0].tolist()
    assert model.tokenizer.unk_token_id not in tokens
    assert len(set(tokens) - {model.tokenizer.pad_token_id, model.tokenizer.eos_token_id}) > 0


def test_an_uncovered_script_is_unknown_tokens(model):
    assert model.tokenizer.unk_token_id in model.tokenize("หมาบนชายหาด")[0].tolist()  # Thai


def test_multilingual_model_is_recognised_by_its_tokenizer(model, clip_model):
    assert covered_scripts(model.tokenizer) == set(QUERIES) and model.multilingual
    assert model.reads("собака") and model.script_note(["猫", "собака"]) is None
    assert not clip_model.multilingual and covered_scripts(clip_model.tokenizer) == set()


def test_embed_and_search_in_cyrillic_and_cjk(model, photos, tmp_path):
    vectors = model.embed_texts(list(QUERIES.values()))
    assert vectors.shape == (5, model.embed_dim) and np.isfinite(vectors).all()
    assert not np.allclose(vectors[0], vectors[2])
    with vislang.Index.open(tmp_path / "idx", model) as index:
        index.add([photos])
        for query in (QUERIES["Cyrillic"], QUERIES["CJK"]):
            hits = index.search(text=query, k=3)
            assert len(hits) == 3 and all(np.isfinite(h.score) for h in hits)


def test_english_only_model_runs_the_query_with_a_note(clip_model):
    assert not clip_model.reads("собака на пляже") and clip_model.reads("a dog, naïve")
    note = clip_model.script_note(["dog", "собака", "猫"])
    assert note.startswith("note: ") and "CJK, Cyrillic" in note and "\n" not in note
    assert clip_model.embed_texts(["собака на пляже"]).shape == (1, 16)


def test_registry_table():
    records = {r.name: r for r in model_records()}
    assert records["siglip2-base"].multilingual and not records["ViT-B/32"].multilingual
    assert not records["open_clip:ViT-B-32/laion2b_s34b_b79k"].multilingual
    assert known_multilingual("google/siglip2-base-patch16-224") is True
    assert known_multilingual("some/unknown-model") is None


def test_cli_models_json_says_multilingual():
    result = run_cli("models", "--json")
    assert result.returncode == 0, result.stderr
    rows = {m["name"]: m for m in json.loads(result.stdout)}
    assert rows["siglip2-base"]["multilingual"] is True
    assert rows["ViT-B/32"]["multilingual"] is False and rows["ViT-B/32"]["family"] == "clip"
    assert rows["blip-vqa"]["family"] == "blip"


def test_cli_classify_notes_a_non_latin_label_for_an_english_model(tiny_clip_dir, photos):
    result = run_cli("classify", photos / "0.png", "--labels", "собака,кошка",
                     "--model", tiny_clip_dir, "--backend", "torch", "--json")
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "Cyrillic" in notes[0]
    assert json.loads(result.stdout)
