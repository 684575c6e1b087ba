"""kernels.compat: the compile backend follows AIPERF_COMPILE_BACKEND, Inductor-only options are dropped for other
backends, and the capability probes answer for the running torch."""

from __future__ import annotations

import pytest
import torch

from kernels import compat
from kernels.llm import TINY, Decoder


def test_the_compile_backend_is_inductor_unless_the_environment_names_another(monkeypatch):
    monkeypatch.delenv(compat.COMPILE_BACKEND_ENV, raising=False)
    assert compat.compile_backend() == "inductor"
    monkeypatch.setenv(compat.COMPILE_BACKEND_ENV, "aot_eager")
    assert compat.compile_backend() == "aot_eager"
    monkeypatch.setenv(compat.COMPILE_BACKEND_ENV, "no_such_backend")
    with pytest.raises(ValueError, match="not a torch.compile backend"):
        compat.compile_backend()


def test_a_compiled_decoder_layer_matches_eager_under_the_ci_backend(monkeypatch):
    monkeypatch.setenv(compat.COMPILE_BACKEND_ENV, "aot_eager")
    model = Decoder(TINY, seed=0)
    layer = model.layers[0]
    compiled = compat.compile(layer, mode="max-autotune", fullgraph=True)
    x = torch.randn(2, 5, TINY.hidden, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, model.cos[:5], model.sin[:5]), layer(x, model.cos[:5], model.sin[:5]))


def test_probes_find_what_the_model_relies_on_and_notice_its_absence(monkeypatch):
    assert compat.sdpa_supports_enable_gqa() and compat.has_set_stance()
    monkeypatch.delattr(torch.compiler, "set_stance")
    assert not compat.has_set_stance()

    def sdpa_without_gqa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None):
        return query

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", sdpa_without_gqa)
    compat.sdpa_supports_enable_gqa.cache_clear()
    try:
        assert not compat.sdpa_supports_enable_gqa()
    finally:
        compat.sdpa_supports_enable_gqa.cache_clear()
