"""The one propagation step: inference, evaluation, benchmark and training all call ``propagate_step``.

Torch in, torch out (NCHW; gray L/100, chroma ab/128, flow in pixels), differentiable, so training
optimises exactly what runs in production. What does not depend on trained weights (DIS flow, its
consistency, the flow chain's confidence, the key match of F_s) comes in as ``Candidates``; what the
run carries from frame to frame is ``Carried``:

    ab_flow  = warp(carried.ab, flow)                       the flow candidate (previous output, carried on)
    ab_key   = candidates.ab_key                            the key candidate (F_s: key colour at the match)
    ab_direct = candidates.ab_direct                        key-direct: the key's colour along DIS flow from
                                                            this frame straight to the key (opt-in by config)
    F_f(cues) -> key logit, residual, confidence            the "choice" head (chain or key):
    w        = 1[key logit > 0]                             hard choice (straight-through when training)
    ab       = (1 − w) · ab_flow + w · ab_key + residual
    F_f(cues) -> predicted error per candidate              the "error" head (any of chain, key, direct):
    ab       = the candidate with the lowest predicted error, every one but the chain priced by the config's
               leave_price (hard argmin, made by F_f; when training asks for it, the gradient of the
               softmin of the predicted errors passes straight through, as ``choose``'s does)

    next carried: ab (what was written), age = 0 where the written colour left the flow candidate, else
    warp(age) + 1 frame: "frames since this pixel's colour was last refreshed from a key", decided from the
    written colour alone so that a resumed run (which reads its colour back) carries the same state.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from colorprop.engine.nets.fusion_net import FusionConfig, FusionNet

AGE_FRAMES = 50.0  # age is fed to F_f as frames / AGE_FRAMES (1 = fifty frames without a refresh)
AB_SCALE = 128.0  # network chroma = ab / 128 (Lab units)
CHOICE_TEMPERATURE = 0.1  # training: the soft choice behind the error head's argmin (log(1 + error) units)
REFRESH_AB = 2.0 / AB_SCALE  # a written colour this far (ab/128) from the flow candidate counts as refreshed


class Candidates(NamedTuple):
    """One frame's inputs that no trained weight changes (precomputed once per run in training).

    gray N x 1 x H x W (L/100, clipped for the networks); flow N x 2 x H x W (pixels, this frame -> the
    previous one); consistency, photometric, chain, similarity N x 1 x H x W in [0, 1] (forward-backward
    flow agreement; luminance match of the warped previous frame; the flow chain's carried confidence;
    F_s's match similarity); ab_key N x 2 x H x W (ab/128, F_s's key colour at the match).
    Key-direct (None unless the fusion config asks for it): ab_direct N x 2 x H x W (ab/128, the key's colour
    along DIS flow from this frame to the key), direct_consistency N x 1 x H x W (that flow's forward-backward
    agreement)."""

    gray: torch.Tensor
    flow: torch.Tensor
    consistency: torch.Tensor
    photometric: torch.Tensor
    chain: torch.Tensor
    ab_key: torch.Tensor
    similarity: torch.Tensor
    ab_direct: torch.Tensor | None = None
    direct_consistency: torch.Tensor | None = None


# The packed layout of one frame's ``Candidates`` and its true colour (training and the choice measurements
# precompute whole runs as T x C x H x W arrays): Candidates' fields without key-direct, ab_true, then the
# key-direct fields when the run has them. A run packed without key-direct (CANDIDATE_CHANNELS) is the first
# channels of one packed with it (DIRECT_CHANNELS): every slice keeps its place.
DIRECT_FIELDS = ("ab_direct", "direct_consistency")
PACKED_LAYOUT = (
    ("gray", 1),
    ("flow", 2),
    ("consistency", 1),
    ("photometric", 1),
    ("chain", 1),
    ("ab_key", 2),
    ("similarity", 1),
    ("ab_true", 2),
    ("ab_direct", 2),
    ("direct_consistency", 1),
)
CANDIDATE_CHANNELS = sum(n for name, n in PACKED_LAYOUT if name not in DIRECT_FIELDS)
DIRECT_CHANNELS = sum(n for _, n in PACKED_LAYOUT)


def packed_slice(name: str) -> slice:
    """The channels of field ``name`` (or "ab_true") in the packed layout."""
    start = 0
    for field, n in PACKED_LAYOUT:
        if field == name:
            return slice(start, start + n)
        start += n
    raise KeyError(name)


def pack_candidates(c: Candidates, ab_true: torch.Tensor) -> torch.Tensor:
    """``Candidates`` (N x C x H x W each) and the true colour (N x 2 x H x W, ab/128) -> N x
    CANDIDATE_CHANNELS x H x W, or N x DIRECT_CHANNELS x H x W when ``c`` holds key-direct."""
    base = [getattr(c, name) for name, _ in PACKED_LAYOUT if name in Candidates._fields and name not in DIRECT_FIELDS]
    direct = [getattr(c, name) for name in DIRECT_FIELDS]
    if any(x is None for x in direct) != all(x is None for x in direct):
        raise ValueError("Candidates: ab_direct and direct_consistency come together")
    return torch.cat([*base, ab_true, *(x for x in direct if x is not None)], dim=1)


def unpack_candidates(packed: torch.Tensor) -> tuple[Candidates, torch.Tensor]:
    """``pack_candidates``' inverse: N x CANDIDATE_CHANNELS (or DIRECT_CHANNELS) x H x W -> (Candidates,
    ab_true N x 2 x H x W)."""
    channels = packed.shape[1]
    if channels not in (CANDIDATE_CHANNELS, DIRECT_CHANNELS):
        raise ValueError(f"packed candidates have {CANDIDATE_CHANNELS} or {DIRECT_CHANNELS} channels, got {channels}")
    fields = {name: packed[:, packed_slice(name)] for name, _ in PACKED_LAYOUT if packed_slice(name).stop <= channels}
    return Candidates(**{k: v for k, v in fields.items() if k != "ab_true"}), fields["ab_true"]


class Carried(NamedTuple):
    """The run's state: the previous frame's written colour (N x 2 x H x W, ab/128) and its age
    (N x 1 x H x W, frames / AGE_FRAMES since last refreshed from a key)."""

    ab: torch.Tensor
    age: torch.Tensor


class StepOutput(NamedTuple):
    """ab N x 2 x H x W (ab/128); ab_flow the flow candidate; key_weight N x 1 x H x W in [0, 1] (1: the key
    match was taken); key_logit before the choice; confidence N x 1 x H x W (F_f's estimate, 1 where there
    is no F_f); age_flow the carried age moved along the flow, one frame older; predicted the error head's
    N x K x H x W predicted log(1 + error) per candidate and chosen its N x 1 x H x W argmin (index into the
    fusion config's candidates), both None for the choice head."""

    ab: torch.Tensor
    ab_flow: torch.Tensor
    key_weight: torch.Tensor
    key_logit: torch.Tensor
    confidence: torch.Tensor
    age_flow: torch.Tensor
    predicted: torch.Tensor | None = None
    chosen: torch.Tensor | None = None


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` (N x C x H x W) at x + flow(x) (flow N x 2 x H x W, pixels): bilinear, border
    replicate, the same sampling as ``flow.warp_backward`` (cv2.remap), differentiable in ``image``."""
    n, _, h, w = image.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=flow.dtype, device=flow.device),
        torch.arange(w, dtype=flow.dtype, device=flow.device),
        indexing="ij",
    )
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border", align_corners=True)


def ab_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per pixel the length of a - b over its two ab channels (N x 2 x H x W -> N x 1 x H x W): the same bits as
    ``(a - b).norm(dim=1, keepdim=True)`` (tested, fp32 and bf16) at a tenth of its CPU time (torch's norm reduces
    the two channels element by element; its vectorised sqrt is not correctly rounded, so the root is taken in
    float64), and like norm's a zero gradient where a == b."""
    d = (a - b).float()
    s = (d[:, :1] * d[:, :1] + d[:, 1:] * d[:, 1:]).double()
    return torch.where(s > 0, s.clamp_min(torch.finfo(s.dtype).tiny).sqrt(), 0.0).to(a.dtype)


def fusion_features(c: Candidates, ab_flow: torch.Tensor, age_flow: torch.Tensor, cfg: FusionConfig) -> torch.Tensor:
    """F_f's input, N x cfg.n_inputs x H x W, in the order fusion_net documents. The error head sees the
    distances between candidates as log(1 + Lab units), the scale of the errors it predicts (a distance
    bounds the error of one candidate given the other's); key-direct's cues come last."""
    scaled = (lambda d: torch.log1p(d * AB_SCALE)) if cfg.head == "error" else (lambda d: d)
    cues = [c.gray, ab_flow, c.ab_key, scaled(ab_distance(ab_flow, c.ab_key))]
    cues += [c.consistency, c.photometric, c.chain, age_flow, c.similarity]
    if cfg.direct:
        cues += [c.ab_direct, scaled(ab_distance(ab_flow, c.ab_direct)), scaled(ab_distance(c.ab_key, c.ab_direct))]
        cues += [c.direct_consistency]
    return torch.cat(cues, dim=1)


def candidate_colours(c: Candidates, ab_flow: torch.Tensor) -> dict[str, torch.Tensor | None]:
    """Each candidate's colour by its name (``fusion_net.CANDIDATE_NAMES``): the chain is ``ab_flow`` (the carried
    colour moved along the flow), the key match and key-direct come with ``c`` (key-direct None without it)."""
    return {"chain": ab_flow, "key": c.ab_key, "direct": c.ab_direct}


def soft_choice(predicted: torch.Tensor) -> torch.Tensor:
    """The error head's choice made soft, for training's gradients only: N x K x H x W shares, the softmin of the
    predicted log(1 + error) at CHOICE_TEMPERATURE (the hard argmin is what is written)."""
    return torch.softmax(-predicted / CHOICE_TEMPERATURE, dim=1)


def choose(key_logit: torch.Tensor, training: bool) -> torch.Tensor:
    """Hard 0/1 choice of the key match; while training, the gradient of the sigmoid passes straight
    through (a soft share left in a carried pixel would leak and compound along the run)."""
    hard = (key_logit > 0).to(key_logit.dtype)
    if not training:
        return hard
    soft = torch.sigmoid(key_logit)
    return hard + soft - soft.detach()


def advance(carried: Carried, flow: torch.Tensor) -> Carried:
    """The carried state moved along the flow onto this frame: the flow candidate and its age, a frame older."""
    moved = warp(torch.cat([carried.ab, carried.age], dim=1), flow)
    return Carried(moved[:, :2], moved[:, 2:3] + 1.0 / AGE_FRAMES)


def propagate_step(
    fusion: FusionNet | None, carried: Carried, c: Candidates, training: bool = False, choice_gradient: bool = False
) -> StepOutput:
    """One frame (module docstring). ``fusion`` None: the flow candidate alone (the classical chain).
    ``choice_gradient`` (training the error head by what it writes): the gradient of the soft choice passes
    straight through its argmin into the written colour, and so on to later frames; else the written colour has
    no gradient path to the predictions (the error fit's own training, unchanged)."""
    ab_flow, age_flow = advance(carried, c.flow)
    if fusion is None:
        zero = torch.zeros_like(c.consistency)
        return StepOutput(ab_flow, ab_flow, zero, zero - 1.0, torch.ones_like(zero), age_flow)
    out = fusion(fusion_features(c, ab_flow, age_flow, fusion.cfg), c.consistency)
    if out.predicted is None:
        w = choose(out.key_logit, training)
        ab = ab_flow + w * (c.ab_key - ab_flow) + out.residual
        return StepOutput(ab, ab_flow, w, out.key_logit, out.confidence, age_flow)
    names = fusion.cfg.candidates
    offered = candidate_colours(c, ab_flow)
    stack = torch.stack([offered[n] for n in names], dim=1)  # N x K x 2 x H x W
    chosen = out.chosen  # N x 1 x H x W, F_f's priced argmin (fusion_net)
    ab = torch.gather(stack, 1, chosen[:, :, None].expand(-1, -1, 2, -1, -1))[:, 0]
    if training and choice_gradient:  # straight through: the soft choice's colour (same values as the hard one)
        mixed = (soft_choice(out.predicted)[:, :, None] * stack).sum(dim=1)
        ab = ab + (mixed - mixed.detach())
    key_weight = (chosen == names.index("key")).to(ab.dtype) if "key" in names else torch.zeros_like(out.confidence)
    return StepOutput(ab, ab_flow, key_weight, out.key_logit, out.confidence, age_flow, out.predicted, chosen)


def carry_on(advanced: Carried, ab_written: torch.Tensor) -> Carried:
    """The state for the next frame from ``advance``'s flow candidate and age and what was written
    (N x 2 x H x W, ab/128): see the module docstring."""
    refreshed = ab_distance(ab_written, advanced.ab) > REFRESH_AB
    return Carried(ab_written, torch.where(refreshed, torch.zeros_like(advanced.age), advanced.age))


def start(ab_key: torch.Tensor) -> Carried:
    """The state at a key frame: its own colour, age 0."""
    return Carried(ab_key, torch.zeros_like(ab_key[:, :1]))
