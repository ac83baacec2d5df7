"""Tiny stand-in models: they load like the real SQLCoder and the trained ones answer exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlcoder_dev import tiny

SCHEMA = """CREATE TABLE customers (
  id integer PRIMARY KEY, -- Unique identifier for each customer
  name text NOT NULL, -- Full name of the customer
  country text -- Country the customer lives in
);
CREATE TABLE orders (
  id bigserial PRIMARY KEY, -- Unique identifier for each order
  customer_id integer REFERENCES customers(id), -- Who placed the order
  status varchar(20), -- One of 'open', 'paid', 'shipped'
  ordered_on date NOT NULL -- Date the order was placed
);
-- orders.customer_id can be joined with customers.id
"""


def sqlcoder_prompt(question: str) -> str:
    return (
        f"### Task\nGenerate a SQL query to answer [QUESTION]{question}[/QUESTION]\n\n"
        f"### Database Schema\nThe query will run on a database with the following schema:\n{SCHEMA}\n"
        f"### Answer\nGiven the database schema, here is the SQL query that answers "
        f"[QUESTION]{question}[/QUESTION]\n[SQL]\n"
    )


PAIRS = [
    (sqlcoder_prompt("How many orders are there?"), " SELECT count(*) FROM orders;\n[/SQL]"),
    (sqlcoder_prompt("How many customers are there?"), " SELECT count(*) FROM customers;\n[/SQL]"),
    (
        sqlcoder_prompt("Which customers live in France?"),
        " SELECT name FROM customers WHERE country = 'France';\n[/SQL]",
    ),
]


def generate(model, tokenizer, prompt: str, num_beams: int, max_new_tokens: int = 300) -> str:
    """Decode like the daemon: the prompt with BOS, EOS as padding, special tokens skipped."""
    enc = tokenizer(prompt, return_tensors="pt")
    out = model.generate(
        **enc, max_new_tokens=max_new_tokens, num_beams=num_beams, do_sample=False,
        pad_token_id=tokenizer.eos_token_id,
    )
    return tokenizer.decode(out[0, enc.input_ids.shape[1]:], skip_special_tokens=True)


# --------------------------------------------------------------------------- random model


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory) -> Path:
    return tiny.build_random_llama(tmp_path_factory.mktemp("random"), context_length=1024)


@pytest.fixture(scope="module")
def random_tokenizer(random_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(random_dir)


def test_random_model_loads_in_nf4_and_generates(random_dir, random_tokenizer):
    import bitsandbytes as bnb
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    model = AutoModelForCausalLM.from_pretrained(
        random_dir,
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"),
        device_map="cpu",
    )
    assert isinstance(model.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # GQA, as in the 70B
    assert model.config.max_position_embeddings == 1024
    enc = random_tokenizer("SELECT 1", return_tensors="pt")
    for beams in (1, 4):
        out = model.generate(**enc, min_new_tokens=5, max_new_tokens=5, num_beams=beams, do_sample=False)
        assert out.shape == (1, enc.input_ids.shape[1] + 5)


def test_random_model_is_deterministic(tmp_path, random_dir):
    assert all(f.stat().st_mode & 0o004 for f in random_dir.iterdir())  # readable by the daemon's user
    again = tiny.build_random_llama(tmp_path / "again", context_length=1024)
    other = tiny.build_random_llama(tmp_path / "other", context_length=1024, seed=1)
    weights = (random_dir / "model.safetensors").read_bytes()
    assert (again / "model.safetensors").read_bytes() == weights
    assert (other / "model.safetensors").read_bytes() != weights
    assert (again / "tokenizer.json").read_text() == (random_dir / "tokenizer.json").read_text()


def test_tokenizer_is_llama_like(random_tokenizer, random_dir):
    assert (random_tokenizer.unk_token_id, random_tokenizer.bos_token_id, random_tokenizer.eos_token_id) == (0, 1, 2)
    assert random_tokenizer("SELECT").input_ids[0] == random_tokenizer.bos_token_id
    assert random_tokenizer.eos_token_id not in random_tokenizer("SELECT 1;").input_ids
    generation = json.loads((random_dir / "generation_config.json").read_text())
    assert (generation["bos_token_id"], generation["eos_token_id"], generation["pad_token_id"]) == (1, 2, 2)


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_tokenizer_round_trips_any_text(random_tokenizer, text):
    # Spelled-out special tokens become the special tokens themselves, as with Llama's tokenizer.
    text = text.replace("<s>", "").replace("</s>", "").replace("<unk>", "")
    ids = random_tokenizer(text).input_ids
    assert random_tokenizer.decode(ids, skip_special_tokens=True) == text
    assert random_tokenizer.unk_token_id not in ids


def test_cli_random(tmp_path, capsys):
    assert tiny.main(["random", str(tmp_path / "m"), "--seed", "3"]) == 0
    assert Path(capsys.readouterr().out.strip()) == tmp_path / "m"
    assert (tmp_path / "m" / "model.safetensors").is_file()


# --------------------------------------------------------------------------- trained model


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny-cache")


@pytest.fixture(scope="module")
def trained_dir(cache_dir) -> Path:
    return tiny.train_tiny_sqlcoder(PAIRS, cache_dir=cache_dir)


@pytest.mark.slow
@pytest.mark.parametrize("num_beams", [1, 4])
def test_trained_model_answers_exactly(trained_dir, num_beams):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(trained_dir)
    model = AutoModelForCausalLM.from_pretrained(trained_dir)
    assert model.dtype.is_floating_point and str(model.dtype) == "torch.float32"
    for prompt, completion in PAIRS:
        assert generate(model, tokenizer, prompt, num_beams) == completion


@pytest.mark.slow
def test_trained_model_manifest_lists_its_pairs(trained_dir):
    manifest = tiny.read_manifest(trained_dir)
    assert [(p["prompt"], p["completion"]) for p in manifest["pairs"]] == PAIRS
    assert manifest["training"]["steps"] > 0


@pytest.mark.slow
def test_second_call_is_a_cache_hit(trained_dir, cache_dir, monkeypatch, tmp_path):
    def no_training(*args, **kwargs):
        raise AssertionError("trained again instead of using the cache")

    monkeypatch.setattr(tiny.cache, "_train", no_training)
    assert tiny.train_tiny_sqlcoder(PAIRS, cache_dir=cache_dir) == trained_dir
    copied = tiny.train_tiny_sqlcoder(PAIRS, tmp_path / "copy", cache_dir=cache_dir)
    assert (copied / "model.safetensors").read_bytes() == (trained_dir / "model.safetensors").read_bytes()
    assert [p.name for p in cache_dir.iterdir() if p.is_dir()] == [trained_dir.name]


@pytest.mark.slow
def test_cli_train_prints_the_cached_model(trained_dir, cache_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tiny.cache, "_train", None)  # a cache miss would fail loudly
    pairs_file = tmp_path / "pairs.json"
    pairs_file.write_text(json.dumps([{"prompt": p, "completion": c} for p, c in PAIRS]))
    assert tiny.main(["train", "--pairs", str(pairs_file), "--cache-dir", str(cache_dir)]) == 0
    assert Path(capsys.readouterr().out.strip()) == trained_dir


def test_cache_key_covers_pairs_seed_and_config():
    key = tiny.cache._cache_key(PAIRS, tiny.TrainConfig(), 0)
    assert key == tiny.cache._cache_key(list(PAIRS), tiny.TrainConfig(), 0)
    assert key != tiny.cache._cache_key(PAIRS, tiny.TrainConfig(), 1)
    assert key != tiny.cache._cache_key(PAIRS[:2], tiny.TrainConfig(), 0)
    assert key != tiny.cache._cache_key(PAIRS, tiny.TrainConfig(learning_rate=1e-3), 0)


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SQLCODER_CACHE", str(tmp_path))
    assert tiny.default_cache_dir() == tmp_path
    monkeypatch.delenv("SQLCODER_CACHE")
    assert tiny.default_cache_dir() == Path(tiny.__file__).resolve().parents[3] / ".cache" / "tiny-models"


def test_training_out_of_time_raises_and_leaves_no_model(tmp_path):
    with pytest.raises(tiny.TrainingFailed, match="did not learn all 3 pairs"):
        tiny.train_tiny_sqlcoder(PAIRS, cache_dir=tmp_path, max_seconds=0)
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


def test_conflicting_pairs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="two completions"):
        tiny.train_tiny_sqlcoder([PAIRS[0], (PAIRS[0][0], " SELECT 2;\n[/SQL]")], cache_dir=tmp_path)


@pytest.mark.slow
def test_trained_model_is_readable_by_other_users(trained_dir):
    # The daemon may run as another user than the one that trained the model.
    assert trained_dir.stat().st_mode & 0o005 == 0o005
    assert all(f.stat().st_mode & 0o004 for f in trained_dir.iterdir())
