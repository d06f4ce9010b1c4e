"""Prompts, domain words, response parsing, label masking, configs (no model needed)."""
from __future__ import annotations

import pytest

from teacher.config import PromptConfig, TeacherConfig, fingerprint, load_config
from teacher.finetune import encode_pair, seeded_sample
from teacher.prompts import PromptBuilder, detect_domain, domain_words, parse_generation

TITLES = ["Star Blaster (PS4)", "Turbo Rally (PC)", "Rune Saga 2 (Switch)", "Gem Match (PC)"]


def test_prompt_text_matches_bigrec_template():
    builder = PromptBuilder(TITLES, PromptConfig(domain="games"), max_history=10)
    expected = (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nGiven a list of video games the user has played before, please recommend a new video game "
        "that the user likes to the user.\n\n"
        '### Input:\nThe user has played the following video games before: "Star Blaster (PS4)", "Gem Match (PC)"\n\n'
        '### Response:\n"'
    )
    assert builder.prompt([0, 3]) == expected
    assert builder.response(2) == 'Rune Saga 2 (Switch)"'


def test_history_truncated_to_most_recent_and_titles_cut():
    builder = PromptBuilder(TITLES, PromptConfig(domain="toys", max_history=2, max_title_chars=10), max_history=10)
    text = builder.prompt([0, 1, 2])
    assert '"Turbo Rall", "Rune Saga"' in text  # last two, each cut to 10 chars (then stripped)
    assert "Star" not in text
    assert "bought the following toys" in text
    empty = builder.prompt([])
    assert empty.endswith('before: \n\n### Response:\n"')


@pytest.mark.parametrize("manifest,domain", [
    ({"reader": "demo"}, "games"),
    ({"reader": "amazon", "sources": ["/data/toys-p5/seq.txt"]}, "toys"),
    ({"reader": "movielens", "sources": ["ml-100k/u.data"]}, "movies"),
    ({"reader": "dros", "sources": ["lastfm-llara"]}, "music"),
    ({"reader": "interactions", "sources": ["x.csv"]}, "items"),
])
def test_domain_detection(manifest, domain):
    assert detect_domain(manifest) == domain


def test_domain_overrides_and_unknown_domain():
    words = domain_words(PromptConfig(domain="movies", verb="rated"))
    assert (words.things, words.thing, words.verb) == ("movies", "movie", "rated")
    with pytest.raises(ValueError, match="unknown prompt domain"):
        domain_words(PromptConfig(domain="cars"))


def test_prompt_hash_tracks_template_only():
    a = PromptBuilder(TITLES, PromptConfig(domain="games"), 10)
    b = PromptBuilder(TITLES[::-1], PromptConfig(domain="games"), 10)  # other titles, same template
    c = PromptBuilder(TITLES, PromptConfig(domain="games", instruction="Recommend a {thing}."), 10)
    d = PromptBuilder(TITLES, PromptConfig(domain="toys"), 10)
    assert a.hash == b.hash
    assert len({a.hash, c.hash, d.hash}) == 3


@pytest.mark.parametrize("raw,title", [
    ('Star Blaster 2 (PS4)"', "Star Blaster 2 (PS4)"),
    (' Gem Match (PC)" and more "text"', "Gem Match (PC)"),
    ("no closing quote ", "no closing quote"),
    ('"', ""),
])
def test_parse_generation(raw, title):
    assert parse_generation(raw) == title


class WordTokenizer:
    """Whitespace tokenizer with a BOS: enough to check label masking by hand."""

    eos_token_id = 99

    def __call__(self, text, add_special_tokens=True):
        ids = [len(w) for w in text.split()]
        return {"input_ids": ([1] if add_special_tokens else []) + ids}


def test_encode_pair_masks_prompt_and_appends_eos():
    enc = encode_pair(WordTokenizer(), "aa bbb", "c dd", max_length=64)
    assert enc["input_ids"] == [1, 2, 3, 1, 2, 99]
    assert enc["labels"] == [-100, -100, -100, 1, 2, 99]
    assert enc["attention_mask"] == [1] * 6


def test_encode_pair_cuts_prompt_from_the_left():
    enc = encode_pair(WordTokenizer(), "a bb ccc dddd eeeee", "ff", max_length=4)
    assert enc["input_ids"] == [4, 5, 2, 99]
    assert enc["labels"] == [-100, -100, 2, 99]


def test_seeded_sample_is_reproducible_and_ordered():
    import pandas as pd

    frame = pd.DataFrame({"x": range(100)})
    a, b = seeded_sample(frame, 10, 3), seeded_sample(frame, 10, 3)
    assert a["x"].tolist() == b["x"].tolist() == sorted(a["x"].tolist())
    assert seeded_sample(frame, 10, 4)["x"].tolist() != a["x"].tolist()
    assert len(seeded_sample(frame, 1000, 0)) == 100


def test_config_defaults_overrides_and_fingerprint(tmp_path):
    cfg = TeacherConfig()
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.target_modules) == (8, 16, 0.05, ["q_proj", "v_proj"])
    assert (cfg.finetune.n_samples, cfg.finetune.lr, cfg.generation.num_beams, cfg.ground.top_n) == (1024, 1e-4, 4, 50)
    assert cfg.ground.exclude_history
    path = tmp_path / "t.json"
    path.write_text('{"mode": "hybrid", "generation": {"num_beams": 2}}')
    loaded = load_config(path, **{"generation.backend": "hf", "max_samples": 7, "model.name": None})
    assert (loaded.mode, loaded.generation.num_beams, loaded.generation.backend, loaded.max_samples) == ("hybrid", 2, "hf", 7)
    assert loaded.model.name == "smollm2"
    assert fingerprint(cfg.lora, 1) == fingerprint(TeacherConfig().lora, 1) != fingerprint(cfg.lora, 2)
    with pytest.raises(ValueError):
        TeacherConfig.model_validate({"ground": {"top_n": 5}})  # contract: N >= 10


def test_every_config_field_is_described():
    from teacher import config as c

    for model in (c.ModelConfig, c.PromptConfig, c.LoraSettings, c.FinetuneConfig, c.GenerationConfig,
                  c.GroundConfig, c.TeacherConfig):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
