"""The DiT: patches, zero init, conditioning and config checks."""

import pytest
import torch

from course_lib import dit, flow
from course_lib.data import NULL_LABEL


@pytest.mark.parametrize("patch", [2, 4, 8])
def test_patchify_and_unpatchify_are_inverses(patch):
    images = torch.randn(3, 1, 32, 32)
    tokens = dit.patchify(images, patch)
    assert tokens.shape == (3, (32 // patch) ** 2, patch * patch)
    torch.testing.assert_close(dit.unpatchify(tokens, patch, 1), images, rtol=0, atol=0)


def test_patchify_orders_patches_row_major():
    images = torch.arange(16.0).view(1, 1, 4, 4)
    tokens = dit.patchify(images, 2)
    torch.testing.assert_close(tokens[0, 0], torch.tensor([0.0, 1, 4, 5]))  # top-left patch
    torch.testing.assert_close(tokens[0, 1], torch.tensor([2.0, 3, 6, 7]))  # its right neighbour


def test_fresh_dit_outputs_zeros():
    model = dit.DiT(dit.preset("tiny", cross_attention=True))
    out = model(torch.randn(4, 1, 32, 32), torch.rand(4), torch.tensor([0, 3, 9, 10]))
    assert out.shape == (4, 1, 32, 32)
    assert (out == 0).all()


def test_output_depends_on_t_after_a_few_steps():
    torch.manual_seed(0)
    model = dit.DiT(dit.preset("tiny"))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.randn(16, 1, 32, 32)
    t = torch.rand(16)
    for _ in range(20):  # target depends on t, so the gates must open towards t
        loss = (model(x, t) - t.view(-1, 1, 1, 1) * x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        early, late = model(x[:2], torch.zeros(2)), model(x[:2], torch.ones(2))
    assert (early - late).abs().mean() > 0.05 * early.abs().mean()


def test_labels_change_the_output_with_cross_attention():
    torch.manual_seed(0)
    model = dit.DiT(dit.preset("tiny", cross_attention=True))
    for block in model.blocks:  # open the zero-initialised paths so the label can act
        torch.nn.init.normal_(block.cross.out.weight, std=0.1)
    torch.nn.init.normal_(model.final.linear.weight, std=0.1)
    x, t = torch.randn(2, 1, 32, 32), torch.rand(2)
    a = model(x, t, torch.tensor([1, 1]))
    b = model(x, t, torch.tensor([7, 7]))
    assert (a - b).abs().max() > 1e-4
    # a label past NULL_LABEL is refused where it enters, by the sampler (the forward pass checks nothing since
    # issue 23): check_labels on entry, before any network call
    with pytest.raises(ValueError, match="labels"):
        flow.sample_ode(model, x, torch.tensor([11, 0]), num_steps=1)


def test_sincos_positions_are_distinct():
    pos = dit.sincos_2d_positions(64, 8)
    assert pos.shape == (64, 64)
    distances = torch.cdist(pos, pos) + torch.eye(64) * 1e3
    assert distances.min() > 0.1


def test_bad_configs_raise():
    with pytest.raises(ValueError, match="does not divide"):
        dit.DiTConfig(patch_size=5)
    with pytest.raises(ValueError, match="positive"):
        dit.DiTConfig(dim=0)
    with pytest.raises(ValueError, match="condition tokens"):
        dit.DiTConfig(cross_attention=True, cond_tokens=1)
    with pytest.raises(ValueError, match="unknown DiT preset"):
        dit.preset("huge")
    model = dit.DiT(dit.preset("tiny"))
    with pytest.raises(ValueError, match="expected images"):
        model(torch.randn(2, 1, 28, 28), torch.rand(2))


# ---------------------------------------------------------------------------- cross-attention
def _keys_and_values(b=3, heads=4, n=64, m=4, hd=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, heads, n, hd, generator=g), torch.randn(b, heads, m, hd, generator=g),
            torch.randn(b, heads, m, hd, generator=g))


def test_attend_weights_path_equals_sdpa():
    q, k, v = _keys_and_values()
    out_sdpa, none = dit.attend(q, k, v)
    out, weights = dit.attend(q, k, v, keep_weights=True)
    assert none is None and weights.shape == (3, 4, 64, 4)
    torch.testing.assert_close(out, torch.nn.functional.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(out, out_sdpa)
    torch.testing.assert_close(out, weights @ v, rtol=0, atol=0)  # the plotted weights made the output


@pytest.fixture(scope="module")
def trained_cross_dit():
    """A tiny cross-attention DiT after 30 Adam steps on a target that depends on the label."""
    torch.manual_seed(0)
    model = dit.DiT(dit.preset("tiny", cross_attention=True))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        x, t = torch.randn(8, 1, 32, 32, generator=g), torch.rand(8, generator=g)
        labels = torch.randint(0, 11, (8,), generator=g)
        target = (labels.float() / 5 - 1).view(-1, 1, 1, 1) * torch.linspace(-1, 1, 32).view(1, 1, 1, 32)
        loss = (model(x, t, labels) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def test_cross_attention_weights_sum_to_one_and_the_model_output_is_the_same(trained_cross_dit):
    model = trained_cross_dit
    x, t, labels = torch.randn(2, 1, 32, 32), torch.rand(2), torch.tensor([3, 10])
    with torch.no_grad():
        fast = model(x, t, labels)
        model.keep_attention_weights(True)
        kept = model(x, t, labels)
    torch.testing.assert_close(kept, fast, rtol=1e-4, atol=1e-5)  # the weights path runs the same numbers
    for block in model.blocks:
        weights = block.cross.last_weights
        assert weights.shape == (2, model.cfg.heads, model.cfg.num_patches, model.cfg.cond_tokens)
        assert (weights >= 0).all()
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    model.keep_attention_weights(False)
    with torch.no_grad():
        model(x, t, labels)
    assert all(block.cross.last_weights is None for block in model.blocks)  # off again: nothing kept


def _token_weight_spreads(model, seed=1):
    """Per cross-attention block: mean over (B, h, N) of max minus min weight over the M tokens."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.keep_attention_weights(True)
        model(torch.randn(4, 1, 32, 32, generator=g), torch.rand(4, generator=g), torch.tensor([0, 4, 7, 10]))
    spreads = [(b.cross.last_weights.max(-1).values - b.cross.last_weights.min(-1).values).mean().item()
               for b in model.blocks]
    model.keep_attention_weights(False)
    return spreads


def test_condition_tokens_get_different_weights_after_training(trained_cross_dit):
    """With the position embedding, token j has its own key; identical tokens would stay at 1/M exactly."""
    torch.manual_seed(0)
    fresh = _token_weight_spreads(dit.DiT(dit.preset("tiny", cross_attention=True)).eval())
    trained = _token_weight_spreads(trained_cross_dit)
    # measured: fresh 0.011 and 0.012 (small random tokens), after 30 steps 0.024 and 0.017; identical
    # tokens (no position embedding) give 0 exactly, fresh or trained
    assert min(trained) > 0.005
    assert sum(trained) > 1.3 * sum(fresh)


def test_labels_change_the_output_after_training(trained_cross_dit):
    x, t = torch.randn(2, 1, 32, 32), torch.rand(2)
    with torch.no_grad():
        outputs = [trained_cross_dit(x, t, torch.full((2,), label)) for label in range(11)]
    for i in range(11):
        for j in range(i + 1, 11):
            assert (outputs[i] - outputs[j]).abs().mean() > 1e-4, (i, j)


def test_null_label_has_its_own_tokens_and_is_the_default(trained_cross_dit):
    model = trained_cross_dit
    tokens = model.condition_tokens(torch.arange(11))  # (11, M, D)
    assert tokens.shape == (11, model.cfg.cond_tokens, model.cfg.dim)
    for digit in range(10):
        assert (tokens[NULL_LABEL] - tokens[digit]).abs().max() > 1e-3
    x, t = torch.randn(2, 1, 32, 32), torch.rand(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), model(x, t, torch.full((2,), NULL_LABEL)), rtol=0, atol=0)


def test_one_condition_token_makes_softmax_identically_one_and_the_block_a_bias():
    """The degenerate case the config forbids: with M = 1 every weight is 1 and the image is ignored."""
    torch.manual_seed(0)
    block = dit.CrossAttention(64, 4)
    torch.nn.init.normal_(block.out.weight, std=0.1)
    block.keep_weights = True
    x = torch.randn(2, 64, 64)  # (B, N, D): image tokens that differ from each other
    cond = torch.randn(2, 1, 64)  # (B, 1, D): a single condition token
    with torch.no_grad():
        out = block(x, cond)
    assert torch.equal(block.last_weights, torch.ones(2, 4, 64, 1))
    # every image token receives the same vector, whatever the token is: a per-label bias
    torch.testing.assert_close(out, out[:, :1].expand_as(out), rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(block(torch.randn(2, 64, 64), cond), out)
