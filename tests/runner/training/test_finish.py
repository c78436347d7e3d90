"""Finishing a run: the trajectory's provenance names versions, commit, model,
options and seed."""


def test_provenance_names_versions_commit_model_options_and_seed(run_of):
    attrs = run_of("tiny-gpt2", "lora").attrs
    for key in ("toolkit_version", "git_commit", "created", "torch_version",
                "transformers_version", "peft_version", "model_revision", "model_architecture",
                "run_seed", "run_lr", "run_mode", "dtype", "device", "outcome_eps_delta",
                "jump_z_star", "jump_window", "jump_a_star", "run_geometry", "lora_targets"):
        assert key in attrs, key
