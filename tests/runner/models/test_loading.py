"""Loading: the accessors of the embedding and readout matrices, and retying."""

import torch

from runner.models import input_embedding, is_tied, load_model, readout_matrix, retie_to_readout


def test_accessors_return_the_embedding_and_readout_matrices():
    model = load_model("tiny-neox").model
    assert input_embedding(model) is model.gpt_neox.embed_in.weight
    assert readout_matrix(model) is model.get_output_embeddings().weight
    assert readout_matrix(model) is not input_embedding(model)


def test_retie_makes_the_input_embedding_the_readout_copy():
    model = load_model("tiny-neox").model
    readout = readout_matrix(model).detach().clone()
    retie_to_readout(model)
    assert is_tied(model)
    assert torch.equal(model.get_input_embeddings().weight, readout)
