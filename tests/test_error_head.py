"""F_f's error head (issue 26): a predicted error per candidate, the lowest taken, its confidence the matte;
the key-direct candidate opt-in by config, so the shipped weights' config (without these fields) is unchanged."""

from __future__ import annotations

import math

import pytest
import torch

from colorprop.engine.nets.fusion_net import FusionConfig, FusionNet
from colorprop.engine.step import Candidates, propagate_step, start
from colorprop.training.config import TrainConfig
from colorprop.training.stage_fusion import error_fit

THREE = ("chain", "key", "direct")


def candidates(n=1, h=24, w=31, seed=0) -> Candidates:
    g = torch.Generator().manual_seed(seed)
    r = lambda c: torch.rand(n, c, h, w, generator=g)  # noqa: E731
    return Candidates(
        gray=r(1),
        flow=torch.zeros(n, 2, h, w),
        consistency=r(1),
        photometric=r(1),
        chain=r(1),
        ab_key=0.3 * torch.randn(n, 2, h, w, generator=g),
        similarity=r(1),
        ab_direct=0.3 * torch.randn(n, 2, h, w, generator=g),
        direct_consistency=r(1),
    )


def test_the_shipped_config_is_the_error_head_older_manifests_load_as_the_choice_head_and_configs_round_trip():
    from colorprop.engine import weights

    shipped = weights.read_manifest().network("fusion").config
    cfg = FusionConfig.from_dict(shipped)
    assert (cfg.candidates, cfg.head, cfg.direct, cfg.n_inputs) == (THREE, "error", True, 16)
    older = {k: v for k, v in shipped.items() if k not in ("candidates", "head", "error_within")}  # before the fields
    cfg = FusionConfig.from_dict(older)
    assert (cfg.candidates, cfg.head, cfg.direct, cfg.n_inputs) == (("chain", "key"), "choice", False, 11)
    new = FusionConfig(candidates=("direct", "chain", "key"), head="error")
    assert new.candidates == THREE and new.n_inputs == 16  # kept in CANDIDATE_NAMES order
    assert FusionConfig.from_dict(new.to_dict()) == new
    with pytest.raises(ValueError, match="chain and key only"):
        FusionConfig(candidates=THREE)
    with pytest.raises(ValueError, match="head"):
        FusionConfig(head="blend")
    with pytest.raises(ValueError, match="candidates"):
        FusionConfig(candidates=("key", "direct"), head="error")
    assert TrainConfig().local_from == ""  # the default run trains stage 1, as the shipped run did


def test_an_error_head_with_equal_predictions_keeps_the_chain_and_takes_the_lowest_predicted_error():
    net = FusionNet(FusionConfig(width=8, candidates=THREE, head="error")).eval()
    with torch.no_grad():
        net.head.weight.zero_()  # every candidate predicted the same error
        net.skip.weight.zero_()
    c = candidates()
    carried = start(0.2 * torch.randn(1, 2, 24, 31, generator=torch.Generator().manual_seed(1)))
    with torch.inference_mode():
        out = propagate_step(net, carried, c)
    assert out.predicted.shape == (1, 3, 24, 31) and out.chosen.shape == (1, 1, 24, 31)
    assert torch.allclose(out.ab, carried.ab, atol=1e-6) and (out.chosen == 0).all()  # ties: the chain (flow)
    assert (out.key_weight == 0).all()
    confidences = []
    for lowest, bias in ((1, [2.0, -1.0, 0.5]), (2, [2.0, 0.5, -2.0])):
        with torch.no_grad():
            net.head.bias.copy_(torch.tensor(bias))
        with torch.inference_mode():
            out = propagate_step(net, carried, c)
        assert (out.chosen == lowest).all()
        assert torch.equal(out.ab, (c.ab_key, c.ab_direct)[lowest - 1])
        assert torch.equal(out.key_weight, torch.full_like(out.key_weight, float(lowest == 1)))
        spread = net.log_spread.exp()
        expected = torch.sigmoid((math.log1p(4.0) - torch.nn.functional.softplus(torch.tensor(min(bias)))) / spread)
        assert torch.allclose(out.confidence, expected.expand_as(out.confidence))
        confidences.append(float(out.confidence.mean()))
    assert 0.0 < confidences[0] < confidences[1] < 1.0  # a lower predicted error is a higher confidence


def test_a_price_for_leaving_the_chain_keeps_it_unless_another_candidate_is_predicted_better_by_more():
    """leave_price is added to every candidate's predicted log(1 + error) but the chain's before the argmin; the
    matte is the chosen candidate's own prediction; 0 (the default) is the plain argmin, bit for bit."""
    bias = torch.tensor([1.0, 0.9, 0.5])  # predicted softplus(bias): chain 1.31, key 1.24, direct 0.97
    gap = torch.nn.functional.softplus(bias[0]) - torch.nn.functional.softplus(bias)  # 0, 0.07, 0.34
    c = candidates()
    carried = start(0.2 * torch.randn(1, 2, 24, 31, generator=torch.Generator().manual_seed(1)))
    outs = {}
    for price in (0.0, 0.05, 0.2, 0.5):
        net = FusionNet(FusionConfig(width=8, candidates=THREE, head="error", leave_price=price)).eval()
        with torch.no_grad():
            net.head.weight.zero_()
            net.skip.weight.zero_()
            net.head.bias.copy_(bias)
        with torch.inference_mode():
            outs[price] = propagate_step(net, carried, c)
    assert 0.05 < float(gap[1]) < 0.2 < float(gap[2]) < 0.5  # the prices below sit between the gaps
    assert (outs[0.0].chosen == 2).all() and (outs[0.05].chosen == 2).all() and (outs[0.2].chosen == 2).all()
    assert (outs[0.5].chosen == 0).all() and (outs[0.5].key_weight == 0).all()
    assert torch.equal(outs[0.5].ab, outs[0.5].ab_flow) and torch.equal(outs[0.2].ab, c.ab_direct)
    assert torch.equal(outs[0.0].confidence, outs[0.2].confidence)  # same choice, same matte
    assert float(outs[0.5].confidence.mean()) < float(outs[0.0].confidence.mean())  # the chain's own, higher error
    key_first = torch.tensor([1.0, 0.5, 0.9])  # key 0.97 vs direct 1.24: priced alike, the lower still wins
    net = FusionNet(FusionConfig(width=8, candidates=THREE, head="error", leave_price=0.2)).eval()
    with torch.no_grad():
        net.head.weight.zero_()
        net.skip.weight.zero_()
        net.head.bias.copy_(key_first)
    with torch.inference_mode():
        assert (propagate_step(net, carried, c).chosen == 1).all()
    cfg = FusionConfig(candidates=THREE, head="error", leave_price=0.3)
    assert FusionConfig.from_dict(cfg.to_dict()) == cfg and FusionConfig().leave_price == 0.0
    with pytest.raises(ValueError, match="leave_price"):
        FusionConfig(leave_price=0.1)  # the choice head has no predicted errors to price
    with pytest.raises(ValueError, match="leave_price"):
        FusionConfig(candidates=THREE, head="error", leave_price=-0.1)


@pytest.mark.slow  # ~10 s: 240 optimiser steps
def test_error_head_learns_which_candidate_is_right_from_its_cues():
    """Trained on error_fit alone: the chain is right where its flow is consistent, the key match where F_s's
    similarity is high, key-direct elsewhere; the argmin then takes the right one almost everywhere."""
    torch.manual_seed(0)
    net = FusionNet(FusionConfig(width=8, dilations=(1, 1), candidates=THREE, head="error"))
    opt = torch.optim.Adam(net.parameters(), lr=3e-2)
    g = torch.Generator().manual_seed(4)

    def frame():
        c = candidates(n=2, seed=int(torch.randint(0, 10**6, (1,), generator=g)))
        truth = 0.3 * torch.randn(2, 2, 24, 31, generator=g)
        region = torch.randint(0, 3, (2, 1, 24, 31), generator=g)
        cons, sim, dcons = (torch.where(region == k, 0.9, 0.1) for k in range(3))
        wrong = lambda k: truth + torch.where(region == k, 0.0, 0.2)  # noqa: E731
        c = c._replace(consistency=cons, similarity=sim, direct_consistency=dcons, ab_key=wrong(1), ab_direct=wrong(2))
        return c, start(wrong(0)), truth, region

    for _ in range(240):
        c, carried, truth, _ = frame()
        out = propagate_step(net, carried, c, training=True)
        loss, numbers = error_fit(out, c, truth, net.cfg.candidates)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(numbers) >= {"error_fit", "right_choice", "chain_share", "key_share", "direct_share"}
    c, carried, truth, region = frame()
    with torch.inference_mode():
        out = propagate_step(net.eval(), carried, c)
    assert float((out.chosen == region).float().mean()) > 0.9
    # the predictions are errors in Lab units: ~0 for the right candidate, ~36 (0.2 · 128 · √2) for the others
    on_right = torch.gather(out.predicted, 1, region)
    on_wrong = (out.predicted.sum(1, keepdim=True) - on_right) / 2
    assert float(on_right.mean()) < math.log1p(4.0) and float(on_wrong.mean()) > math.log1p(20.0)


def test_while_training_the_written_colour_is_the_argmin_and_the_outcome_loss_reaches_the_predictions():
    """The soft choice behind the argmin changes no value written (training = inference, bit for bit), but the
    outcome loss's gradient reaches the error head; where every candidate is as good, its price for leaving the
    chain moves the choice onto the chain."""
    from colorprop.engine.step import soft_choice
    from colorprop.training.stage_fusion import outcome_loss

    net = FusionNet(FusionConfig(width=8, candidates=THREE, head="error"))
    c = candidates()
    carried = start(0.2 * torch.randn(1, 2, 24, 31, generator=torch.Generator().manual_seed(1)))
    with torch.inference_mode():
        inferred = propagate_step(net, carried, c)
    fitted = propagate_step(net, carried, c, training=True)  # the error fit's own training
    assert not fitted.ab.requires_grad  # the written colour has no path to F_f's weights
    trained = propagate_step(net, carried, c, training=True, choice_gradient=True)
    assert torch.equal(trained.ab, inferred.ab) and torch.equal(trained.chosen, inferred.chosen)
    assert trained.ab.requires_grad
    outcome_loss(trained, torch.zeros_like(trained.ab), leave_cost=0.0).backward()
    assert net.head.weight.grad.abs().sum() > 0  # the colour's L1 reaches the predictions through the soft choice

    same = c._replace(ab_key=carried.ab.clone(), ab_direct=carried.ab.clone())  # all three candidates equal
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    shares = []
    for _ in range(20):
        out = propagate_step(net, carried, same, training=True, choice_gradient=True)
        shares.append(float(soft_choice(out.predicted.detach())[:, 0].mean()))
        opt.zero_grad()
        outcome_loss(out, carried.ab, leave_cost=0.1).backward()  # the L1 is 0 wherever the choice falls
        opt.step()
    assert shares[-1] > shares[0] + 0.1, shares


def test_the_spread_weighted_fit_teaches_most_where_the_candidates_errors_differ():
    """Pixels whose three candidates are equally wrong teach the argmin nothing: with a spread floor the fit's
    gradient there is the floor's share of what it is where one candidate is far better; without, alike."""
    from colorprop.engine.step import StepOutput

    c = candidates(h=8, w=16)
    truth = torch.zeros(1, 2, 8, 16)
    chain = torch.full((1, 2, 8, 16), 0.05)
    key = chain.clone()
    key[..., 8:] = 0.0  # right half: the key match is exact, the chain and key-direct 0.05 off
    c = c._replace(ab_key=key, ab_direct=chain.clone())
    grads = {}
    for floor in (0.0, 0.1):
        predicted = torch.zeros(1, 3, 8, 16, requires_grad=True)
        zero = torch.zeros(1, 1, 8, 16)
        out = StepOutput(chain, chain, zero, zero, zero, zero, predicted, zero.long())
        error_fit(out, c, truth, THREE, spread_floor=floor)[0].backward()
        g = predicted.grad[:, 0].abs()  # the chain's prediction: equally wrong on both halves
        grads[floor] = float(g[..., :8].mean() / g[..., 8:].mean())
    assert grads[0.0] == pytest.approx(1.0)
    assert grads[0.1] < 0.2  # the tie half weighs floor / (spread + floor)
