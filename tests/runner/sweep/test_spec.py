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
