"""The sweep Dataset: the architecture level of the eta_c table."""

import numpy as np
import pytest


def test_the_architecture_eta_c_is_the_geometric_mean_over_contexts(small_sweep):
    _, _, ds = small_sweep
    values = ds.eta_c.sel(model="tiny-neox", mode="lora", optimizer="sgd").values.ravel()
    expected = np.exp(np.log(values).mean())
    assert float(ds.eta_c_arch.sel(model="tiny-neox", mode="lora", optimizer="sgd")) == \
        pytest.approx(expected)
