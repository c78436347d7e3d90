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
])
def test_a_bad_spec_is_refused_with_a_clear_message(tmp_path, edit, message):
    with pytest.raises(PhantomError, match=message):
        load_spec(write_spec(tmp_path, SMALL.replace(*edit)))


def test_the_spec_round_trips_through_json(tmp_path):
    spec = load_spec(write_spec(tmp_path))
    assert SweepSpec.from_json(spec.to_json()) == spec
