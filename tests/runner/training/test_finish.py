"""Finishing a run: the trajectory's provenance names versions, commit, model,
options and seed."""


def test_provenance_names_versions_commit_model_options_and_seed(run_of):
    attrs = run_of("tiny-gpt2", "lora").attrs
    for key in ("toolkit_version", "git_commit", "created", "torch_version",
                "transformers_version", "peft_version", "model_revision", "model_architecture",
                "run_seed", "run_lr", "run_mode", "dtype", "device", "outcome_eps_rel",
                "outcome_trend_test", "jump_z_star", "jump_window", "jump_a_star",
                "jump_spike_ratio", "jump_onset_increments", "run_geometry", "lora_targets"):
        assert key in attrs, key


def test_the_outcome_and_jump_options_a_run_was_judged_with_are_its_attributes():
    from phantom_theory.jumps import JumpOptions
    from phantom_theory.outcomes import OutcomeOptions
    from runner.training import RunOptions, run

    ds = run(RunOptions(model="tiny-gpt2", mode="lora", lr=1e-2, steps=4),
             outcome_options=OutcomeOptions(eps_rel=0.25, trend_test="none"),
             jump_options=JumpOptions(spike_ratio=3.0, onset_increments=1))
    assert (ds.attrs["outcome_eps_rel"], ds.attrs["outcome_trend_test"]) == (0.25, "none")
    assert (ds.attrs["jump_spike_ratio"], ds.attrs["jump_onset_increments"]) == (3.0, 1)
