"""LoRA wrapping: a tied base model stays tied."""


def test_lora_keeps_the_tied_model_tied(run_of):
    ds = run_of("tiny-gpt2", "lora")
    assert ds.attrs["tied_base"] == 1 and ds.attrs["tie_preserved"] == 1
