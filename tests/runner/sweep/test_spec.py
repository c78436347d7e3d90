"""The sweep spec: the shipped specs load, a bad spec is refused with a clear
message, and a spec round-trips through JSON."""

import pytest

from phantom_theory.errors import PhantomError
from runner.sweep import SweepSpec, load_spec
from tests.conftest import ROOT, SMALL, write_spec


def test_the_shipped_specs_load():
    demo, study = load_spec(ROOT / "data/sweeps/demo.toml"), load_spec(ROOT / "data/sweeps/study.toml")
    assert len(demo.groups()) == 50
    assert len(study.models) == 5 and len(study.contexts) == 10
    assert set(study.modes) == {"full", "lora"}


@pytest.mark.parametrize("edit,message", [
    (("steps = 20", "steps = 20\nbogus = 1"), "unknown key"),
    (('models = ["tiny-neox"]', "models = []"), "lists no models"),
    (("lo = 1e-6", "lo = 100.0"), "0 < lo < hi"),
    (('dtype = "float64"', 'dtype = "float64"\nlr = 0.1'), "may not set"),
    (('optimizers = ["sgd"]', 'optimizers = ["lbfgs"]'), "optimizer must be"),
    (("seeds = [0]", "seeds = [0, 0]"), "lists 0 twice in seeds"),
    (("seeds = [0]", "seeds = [-1]"), "seed must be an integer from 0 to 2\\*\\*63 - 1, not -1"),
    (('models = ["tiny-neox"]', 'models = ["tiny-neox", "tiny-neox"]'), "'tiny-neox' twice"),
    (("seeds = [0]", "seeds = [0]\nselected_count = 3"), "applies only to contexts"),
    (('contexts = ["shame-guilt", "start-begin"]', "contexts = 5"), "not 5"),
    (("seeds = [0]", "seeds = { full = [0] }"), "seeds names mode 'full', which the spec"),
    (("seeds = [0]", "seeds = { lora = [] }"), "no seed for mode 'lora'"),
    (("seeds = [0]", "seeds = [0]\nexclude = 3"), "exclude in .* must be a list of tables"),
    (("seeds = [0]", 'seeds = [0]\nexclude = [{ colour = "red" }]'), "must be a table of group"),
    (("seeds = [0]", 'seeds = [0]\nexclude = [{ model = "gpt2" }]'), "model 'gpt2' is not one"),
    (("seeds = [0]", 'seeds = [0]\nexclude = [{ mode = "lora" }]'), "leaves no group to run"),
])
def test_a_bad_spec_is_refused_with_a_clear_message(tmp_path, edit, message):
    with pytest.raises(PhantomError, match=message):
        load_spec(write_spec(tmp_path, SMALL.replace(*edit)))


def test_the_spec_round_trips_through_json(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    assert SweepSpec.from_json(spec.to_json()) == spec


def test_a_folder_given_as_the_spec_is_refused(tmp_path):
    with pytest.raises(PhantomError, match="is a folder; give a sweep spec's TOML file"):
        load_spec(tmp_path)


def test_seeds_per_mode_and_excluded_groups_shape_the_groups(tmp_path):
    text = SMALL.replace('modes = ["lora"]', 'modes = ["full", "lora"]').replace(
        "seeds = [0]", 'seeds = { full = [0], lora = [0, 1] }\n'
        'exclude = [{ mode = "full", context = "start-begin" }]')
    spec = load_spec(write_spec(tmp_path, text))
    assert spec.seeds == (0, 1) and spec.seeds_of("full") == (0,) and spec.seeds_of("lora") == (0, 1)
    assert spec.groups() == [("tiny-neox", "shame-guilt", "full", "sgd", 0),
                             ("tiny-neox", "shame-guilt", "lora", "sgd", 0),
                             ("tiny-neox", "shame-guilt", "lora", "sgd", 1),
                             ("tiny-neox", "start-begin", "lora", "sgd", 0),
                             ("tiny-neox", "start-begin", "lora", "sgd", 1)]
    assert spec.groups({"mode": ["full"]}) == spec.groups()[:1]
    back = SweepSpec.from_json(spec.to_json())
    assert back == spec and back.digest() == spec.digest()
    # a spec without them keeps the digest it had before they existed
    plain = load_spec(write_spec(tmp_path, SMALL, "plain.toml"))
    assert "mode_seeds" not in plain.to_json() and "exclude" not in plain.to_json()


def test_a_stage_names_only_what_the_spec_has(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    with pytest.raises(PhantomError, match="--models gpt2: not among the spec's models"):
        spec.check_only({"model": ["gpt2"]})
    assert spec.check_only({"model": None, "mode": ["lora"]}) == {"mode": ["lora"]}
    assert spec.check_only({"model": None}) is None


def test_the_study_v2_spec_has_the_issue_s_cells():
    spec = load_spec(ROOT / "data/sweeps/real2.toml")
    cells = {(m, mo, o) for m, _, mo, o, _ in spec.groups()}
    assert len(spec.models) == 4 and len(spec.contexts) >= 12 and len(spec.held_out) == 3
    assert ("qwen2.5-coder-1.5b", "full", "adamw") not in cells
    assert ("qwen2.5-coder-1.5b", "lora", "sgd") in cells
    assert {(m, o) for m, _, o in cells} >= {(m, o) for m in spec.models[:3]
                                                for o in ("sgd", "adamw")}
    assert spec.seeds_of("lora") == (0, 1) and spec.seeds_of("full") == (0,)
    assert spec.steps == 15 and spec.search.tolerance == 0.01 and spec.search.max_tolerance == 0.05
    for steps in (60, 240):   # stage 2: eta_c(T) on one model, its contexts of the crossed set
        time = load_spec(ROOT / f"data/sweeps/real2-t{steps}.toml")
        assert time.steps == steps and set(time.contexts) <= set(spec.contexts) - set(spec.held_out)
        assert time.search == spec.search and time.run == spec.run
