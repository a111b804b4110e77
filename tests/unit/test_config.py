"""config: YAML + dotted overrides, strict keys and types, value checks, shipped recipes."""

from pathlib import Path

import pytest
import yaml

import selfreward
from selfreward.commands.run import _shipped_recipes, recipe_path
from selfreward.config import LoraConfig, RunConfig, flatten, from_dict, load_config
from selfreward.errors import UserError

# Recipes only: recipes/accelerate/ holds accelerate configs, and glob("*.yaml") does not descend into it.
RECIPES = sorted((Path(selfreward.__file__).parent / "recipes").glob("*.yaml"))


def write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path, overrides=()):
    with pytest.raises(UserError) as e:
        load_config(path, list(overrides))
    return str(e.value)


def test_defaults_without_a_file():
    cfg = load_config(None)
    assert cfg == RunConfig()
    assert (cfg.sample.n, cfg.judge.k, cfg.iterations, cfg.seed) == (4, 3, 2, 0)
    assert cfg.sft.lora is None


def test_yaml_file_and_overrides(tmp_path):
    path = write(tmp_path, "sample:\n  n: 6\n  temperature: 0.5\niterations: 3\nmodel:\n  name: some/model\n")
    cfg = load_config(path, ["sample.temperature=0.9", "judge.k=5", "seed=7", "model.trust_remote_code=true",
                             "data.max_ift=10", "gen_prompts.banned_words=[foo, bar]"])
    assert cfg.sample.n == 6
    assert cfg.sample.temperature == 0.9
    assert cfg.judge.k == 5
    assert cfg.iterations == 3
    assert cfg.seed == 7
    assert cfg.model.name == "some/model"
    assert cfg.model.trust_remote_code is True
    assert cfg.data.max_ift == 10
    assert cfg.gen_prompts.banned_words == ["foo", "bar"]
    assert cfg.sample.top_p == 0.9  # untouched default


def test_override_values_are_yaml_typed():
    cfg = load_config(None, ["data.max_ift=null", "judge.model=null", "model.name=Qwen/Qwen2.5-0.5B-Instruct"])
    assert cfg.data.max_ift is None
    assert cfg.judge.model is None
    assert cfg.model.name == "Qwen/Qwen2.5-0.5B-Instruct"


def test_override_creates_optional_section():
    cfg = load_config(None, ["sft.lora.r=8"])
    assert cfg.sft.lora == LoraConfig(r=8)
    assert cfg.dpo.lora is None


def test_override_wins_over_file(tmp_path):
    path = write(tmp_path, "sample:\n  n: 6\n")
    assert load_config(path, ["sample.n=3"]).sample.n == 3


def test_unknown_key_names_the_dotted_key(tmp_path):
    path = write(tmp_path, "sample:\n  temprature: 0.5\n")
    msg = error_of(path)
    assert "'sample.temprature'" in msg
    assert msg.startswith(str(path))
    assert "temperature" in msg  # lists the valid keys


def test_unknown_key_via_override():
    assert "'sample.temprature'" in error_of(None, ["sample.temprature=0.5"])


def test_unknown_top_level_key(tmp_path):
    assert "unknown config key 'iteration'" in error_of(write(tmp_path, "iteration: 3\n"))


def test_wrong_type_names_the_key(tmp_path):
    msg = error_of(write(tmp_path, 'sample:\n  n: "four"\n'))
    assert msg == f"{tmp_path / 'recipe.yaml'}: 'sample.n' must be int, got 'four'"


@pytest.mark.parametrize("override, key", [
    ("sample.n=4.0", "sample.n"),
    ("model.trust_remote_code=1", "model.trust_remote_code"),
    ("sample.temperature=hot", "sample.temperature"),
    ("sample.temperature=true", "sample.temperature"),  # bool is not a number
    ("sft.batch_size=yes", "sft.batch_size"),
    ("model.name=12", "model.name"),
    ("gen_prompts.banned_words=[1, 2]", "gen_prompts.banned_words"),
    ("gen_prompts.banned_words=image", "gen_prompts.banned_words"),
])
def test_wrong_types_rejected(override, key):
    assert f"'{key}'" in error_of(None, [override])


def test_int_accepted_for_float_fields(tmp_path):
    cfg = load_config(write(tmp_path, "sft:\n  epochs: 2\n"), ["sample.temperature=1", "dpo.beta=0"])
    assert cfg.sft.epochs == 2.0 and isinstance(cfg.sft.epochs, float)
    assert cfg.sample.temperature == 1.0 and isinstance(cfg.sample.temperature, float)
    assert cfg.dpo.beta == 0.0 and isinstance(cfg.dpo.beta, float)


@pytest.mark.parametrize("override, key", [
    ("sft.batch_size=0", "sft.batch_size"),
    ("dpo.grad_accum=-1", "dpo.grad_accum"),
    ("judge.k=0", "judge.k"),
    ("gen_prompts.num_prompts=0", "gen_prompts.num_prompts"),
    ("sample.max_new_tokens=-5", "sample.max_new_tokens"),
    ("iterations=0", "iterations"),
])
def test_non_positive_rejected(override, key):
    assert f"'{key}' must be at least 1" in error_of(None, [override])


@pytest.mark.parametrize("override, key", [
    ("sample.temperature=-0.1", "sample.temperature"),
    ("dpo.beta=-1", "dpo.beta"),
    ("sft.learning_rate=-0.5", "sft.learning_rate"),
])
def test_negative_rejected(override, key):
    assert f"'{key}' must not be negative" in error_of(None, [override])


@pytest.mark.parametrize("override, key", [
    ("sample.top_p=1.5", "sample.top_p"),
    ("gen_prompts.rouge_l_max=-0.1", "gen_prompts.rouge_l_max"),
    ("sft.warmup_ratio=1", "sft.warmup_ratio"),
])
def test_ratios_out_of_range(override, key):
    assert f"'{key}' must be between 0 and 1" in error_of(None, [override])


def test_sample_n_one_rejected():
    assert error_of(None, ["sample.n=1"]) == "defaults: 'sample.n' must be at least 2 to build pairs, got 1"
    assert load_config(None, ["sample.n=2"]).sample.n == 2


def test_min_words_above_max_words():
    assert "'gen_prompts.min_words' is above 'gen_prompts.max_words'" in error_of(
        None, ["gen_prompts.min_words=10", "gen_prompts.max_words=5"])


def test_mixed_precision_choices():
    assert load_config(None, ["sft.mixed_precision=fp32"]).sft.mixed_precision == "fp32"
    assert load_config(None, ["dpo.mixed_precision=bf16"]).dpo.mixed_precision == "bf16"
    msg = error_of(None, ["sft.mixed_precision=fp16"])
    assert msg == "defaults: 'sft.mixed_precision' must be one of ['auto', 'bf16', 'fp32'], got 'fp16'"


def test_mixed_precision_no_is_rejected_naming_the_key():
    # YAML reads `no` as False: it must be an error naming the key, not a silent "no mixed precision".
    msg = error_of(None, ["sft.mixed_precision=no"])
    assert "'sft.mixed_precision'" in msg
    assert "False" in msg


def test_mixed_precision_no_message_lists_the_choices():
    msg = error_of(None, ["sft.mixed_precision=no"])
    assert "auto" in msg and "bf16" in msg and "fp32" in msg


def test_model_dtype_choices():
    assert "'model.dtype' must be one of" in error_of(None, ["model.dtype=fp16"])


def test_exponent_without_dot_accepted_for_float_fields(tmp_path):
    cfg = load_config(write(tmp_path, "sft:\n  learning_rate: 1e-5\n"), ["dpo.learning_rate=1e-6"])
    assert cfg.sft.learning_rate == 1e-5
    assert cfg.dpo.learning_rate == 1e-6


def test_exponent_with_dot_accepted():
    assert load_config(None, ["dpo.learning_rate=1.0e-6"]).dpo.learning_rate == 1e-6


def test_override_into_empty_yaml_section(tmp_path):
    path = write(tmp_path, "sft:\n  # lora: {r: 8}\nsample:\n  n: 4\n")
    assert load_config(path, ["sft.batch_size=4"]).sft.batch_size == 4


def test_empty_yaml_section_uses_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "sft:\nsample:\n  n: 5\n"))
    assert cfg.sft.batch_size == 16
    assert cfg.sample.n == 5


def test_empty_file_is_defaults(tmp_path):
    assert load_config(write(tmp_path, "# nothing\n")) == RunConfig()


@pytest.mark.parametrize("item", ["foo", "=3", "sample.n"])
def test_malformed_override(item):
    assert error_of(None, [item]) == f"override '{item}' must look like key=value, e.g. sample.n=4"


def test_override_into_a_non_section(tmp_path):
    path = write(tmp_path, "iterations: 2\n")
    assert error_of(path, ["iterations.x=1"]) == "override 'iterations.x=1': 'iterations' is not a section"


def test_section_must_be_a_mapping():
    assert error_of(None, ["sample=3"]) == "defaults: 'sample' must be a mapping"


def test_missing_file(tmp_path):
    assert error_of(tmp_path / "nope.yaml") == f"config file not found: {tmp_path / 'nope.yaml'}"


def test_invalid_yaml(tmp_path):
    path = write(tmp_path, "sample: [1, 2\n")
    assert error_of(path).startswith(f"{path}: not valid YAML (")


def test_top_level_not_a_mapping(tmp_path):
    path = write(tmp_path, "- a\n- b\n")
    assert error_of(path) == f"{path}: expected a mapping of config sections at the top level"


def test_to_dict_round_trips_through_yaml():
    cfg = load_config(None, ["sft.lora.r=8", "sample.n=5", "judge.model=some/judge"])
    again = from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict(), sort_keys=False)), "config.yaml")
    assert again == cfg


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": None}}, "e": [1, 2]}) == {"a.b": 1, "a.c.d": None, "e": [1, 2]}
    assert flatten({}) == {}
    flat = flatten(RunConfig().to_dict())
    assert flat["sample.n"] == 4
    assert flat["sft.lora"] is None
    assert flat["gen_prompts.banned_words"][0] == "image"
    assert flat["iterations"] == 2
    assert "sample" not in flat


def test_at_least_one_recipe_is_shipped():
    assert "tiny-cpu" in [p.stem for p in RECIPES]


def test_make_run_trains_adapters_in_processes_of_their_own():
    """`make run`'s recipe under 3 GB: full AdamW training of the 135M model peaked at 3.9 GB, adapters at 2.4 GB,
    and one long process kept about 1 GB of earlier stages' memory (docs/benchmarks.md)."""
    cfg = load_config(recipe_path("tiny-cpu"))
    assert cfg.sft.lora is not None and cfg.dpo.lora is not None
    assert cfg.stage_processes


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_loads_and_validates(recipe):
    cfg = load_config(recipe)
    assert isinstance(cfg, RunConfig)
    assert cfg.sample.n >= 2
    assert cfg.iterations >= 1
    # the CLI resolves it by name
    assert recipe_path(recipe.stem).resolve() == recipe.resolve()
    assert recipe.stem in _shipped_recipes()
    # an accelerate config it names exists, as a path or beside the shipped recipes (recipes/accelerate/...)
    if cfg.accelerate_config:
        assert (Path(cfg.accelerate_config).expanduser().is_file()
                or (recipe.parent / cfg.accelerate_config).is_file()), cfg.accelerate_config


def test_unknown_recipe_name():
    with pytest.raises(UserError, match=r"config file not found: no-such-recipe \(a path, or a shipped recipe: .*"
                                        r"tiny-cpu"):
        recipe_path("no-such-recipe")


# --- issue 11: values that passed every check ----------------------------------------------------------------
@pytest.mark.parametrize("override, key", [
    ("sample.temperature=.nan", "sample.temperature"), ("judge.temperature=.nan", "judge.temperature"),
    ("sft.learning_rate=.inf", "sft.learning_rate"), ("dpo.beta=-.inf", "dpo.beta"),
    ("sft.learning_rate=nan", "sft.learning_rate"),  # a string YAML does not read as a number: float() does
    ("gen_prompts.top_p=.NaN", "gen_prompts.top_p"), ("pairs.length_control=[0.5, .nan]", "pairs.length_control"),
    ("reward.beta=1e999", "reward.beta"),
])
def test_non_finite_floats_rejected_anywhere(override, key):
    """NaN passes every comparison (nan < 0 is False), so each range check let it through."""
    assert error_of(None, [override]).startswith(f"defaults: '{key}' must be a finite number, got ")


@pytest.mark.parametrize("seed", ["-1", "2147483648", "99999999999"])
def test_seed_out_of_range(seed):
    """transformers refuses a negative seed only when training starts, numpy one of 2**32 or more."""
    assert error_of(None, [f"seed={seed}"]) == f"defaults: 'seed' must be between 0 and 2147483647, got {seed}"


def test_lora_dropout_range():
    assert error_of(None, ["sft.lora.dropout=1.0"]) == "defaults: 'sft.lora.dropout' must be in [0, 1), got 1.0"


@pytest.mark.parametrize("text, key, line", [
    ("sample:\n  n: 4\n  n: 8\n", "sample.n", 3),
    ("iterations: 2\nsft:\n  epochs: 1\niterations: 3\n", "iterations", 4),
    ("sft: {lora: {r: 4, r: 8}}\n", "sft.lora.r", 1),
])
def test_duplicate_keys_rejected_naming_the_key(tmp_path, text, key, line):
    """YAML keeps the last of two equal keys silently; a recipe with both is a mistake to point at."""
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}: key '{key}' is given twice (line {line}); keep one"


def test_yaml_merge_keys_may_be_overridden(tmp_path):
    path = write(tmp_path, "sample:\n  <<: {n: 4, temperature: 0.5}\n  n: 6\n")
    assert load_config(path).sample.n == 6


@pytest.mark.parametrize("data, expected", [
    ("sample:\n  n: caf\u00e9\n".encode("latin-1"), ":2: not UTF-8 text"),
    (b"\xff\xfe\x00s", ":1: not UTF-8 text"),
    (b"when: 2024-13-45\n", ": not valid YAML (month must be in 1..12)"),
    (b"a: [" * 5000, ": not valid YAML ("),
    (b"a: !!python/object:os.system {}\n", ": not valid YAML (could not determine a constructor"),
])
def test_unreadable_recipe_is_one_line(tmp_path, data, expected):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(data)
    msg = error_of(path)
    assert msg.startswith(f"{path}{expected}") and "\n" not in msg


@pytest.mark.parametrize("item", ["sample..n=3", ".n=3", "sample.=3"])
def test_override_with_an_empty_key_part(item):
    key = item.partition("=")[0]
    assert error_of(None, [item]) == f"override '{item}': '{key}' is not a dotted key such as sample.n"


def test_keys_in_messages_stay_on_one_line(tmp_path):
    path = write(tmp_path, '"sample\\nx": 1\n')
    assert error_of(path).startswith(f"{path}: unknown config key 'sample\\nx'")


def test_optimizer_choices():
    assert load_config(None, []).sft.optim == "adamw_torch_fused"
    assert load_config(None, ["dpo.optim=adafactor"]).dpo.optim == "adafactor"
    msg = error_of(None, ["sft.optim=adamw_bnb_8bit"])
    assert msg == "defaults: 'sft.optim' must be one of ['adafactor', 'adamw_torch_fused'], got 'adamw_bnb_8bit'"
