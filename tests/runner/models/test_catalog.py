"""The catalog of model names: every name resolves to where it is loaded from."""

from runner.models import resolve


def test_registry_names_resolve_to_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("PHANTOM_HOME", str(tmp_path))
    source, location = resolve("smollm2-135m")
    assert source == "registry" and location.startswith(str(tmp_path))
    assert resolve("tiny-gpt2")[0] == "builtin" and resolve("gpt2")[0] == "hub"
