"""Calibration of a classifier's confidence, and the loss for partly labelled sources.

Temperature scaling (Guo et al. 2017, "On calibration of modern neural
networks"): one scalar T divides the logits before the softmax, fitted by
minimising the negative log-likelihood on held-out rows. The ranking of the
labels does not change, only how sure the model says it is, so that a
threshold such as the dialogue's ``min_intent_confidence`` means what it says:
of the messages served at confidence 0.6, about 60% are right.
"""

from __future__ import annotations

import torch


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, steps: int = 200) -> float:
    """The T > 0 that minimises NLL of ``softmax(logits / T)`` on ``targets``."""
    if len(logits) == 0:
        return 1.0
    logits, targets = logits.detach().float(), targets.detach().long()
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")
    loss_fn = torch.nn.CrossEntropyLoss()

    def closure():
        opt.zero_grad()
        loss = loss_fn(logits / log_t.exp(), targets)
        loss.backward()
        return loss

    opt.step(closure)
    # Bounded: a handful of held-out rows must not make a model absurdly sure or unsure.
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def expected_calibration_error(probs: torch.Tensor, targets: torch.Tensor, bins: int = 10) -> float:
    """ECE: the gap between confidence and accuracy, averaged over confidence bins
    weighted by how many predictions fall in each."""
    if len(probs) == 0:
        return 0.0
    conf, pred = probs.max(1)
    right = (pred == targets).float()
    ece = torch.zeros(())
    edges = torch.linspace(0, 1, bins + 1)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.float().mean() * (conf[sel].mean() - right[sel].mean()).abs()
    return round(float(ece), 4)


def masked_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, allowed: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Cross-entropy (with label smoothing) over each row's ``allowed`` labels only.

    A source whose label set is partial (Chinese reviews: negative or positive,
    never neutral) says which of *its* labels a text has, not that the labels it
    lacks are wrong. Its rows compare only the labels they have: the logits of
    the others are masked out, so they get no gradient from those rows and
    their probability is never pushed down by them. With every label allowed
    this is ``torch.nn.CrossEntropyLoss(label_smoothing=...)`` exactly.
    """
    masked = logits.float().masked_fill(~allowed, torch.finfo(torch.float32).min)
    logp = torch.log_softmax(masked, dim=-1)
    nll = -logp.gather(1, targets.unsqueeze(1)).squeeze(1)
    smooth = -(logp.masked_fill(~allowed, 0.0)).sum(1) / allowed.sum(1)
    return ((1 - label_smoothing) * nll + label_smoothing * smooth).mean()


def fit_label_offsets(
    logp: torch.Tensor, targets: torch.Tensor, free: torch.Tensor, steps: int = 200, bound: float = 3.0
) -> torch.Tensor:
    """Additive log-prior offsets for the ``free`` labels that minimise NLL of
    ``softmax(logp + offsets)`` on ``targets`` (the other labels' offsets stay 0).

    Prior shift (Saerens et al. 2002, "Adjusting the outputs of a classifier to
    new a priori probabilities"): a model trained where one label is rarer than
    where it serves (Chinese text seen mostly in reviews, never neutral) keeps
    its ranking within a text but puts the boundary in the wrong place. Fitted
    per language on held-out chat rows, only for labels that a partly
    labelled source lacks, so the comparisons that source did teach (a review's
    negative against positive) are left exactly as trained.
    """
    n_labels = logp.shape[1]
    if len(logp) == 0 or not bool(free.any()):
        return torch.zeros(n_labels)
    logp, targets = logp.detach().float(), targets.detach().long()
    raw = torch.zeros(int(free.sum()), requires_grad=True)
    opt = torch.optim.LBFGS([raw], lr=0.1, max_iter=steps, line_search_fn="strong_wolfe")
    loss_fn = torch.nn.CrossEntropyLoss()
    index = free.nonzero().squeeze(1)

    def offsets() -> torch.Tensor:
        return torch.zeros(n_labels).index_add(0, index, bound * torch.tanh(raw / bound))

    def closure():
        opt.zero_grad()
        loss = loss_fn(logp + offsets(), targets)
        loss.backward()
        return loss

    opt.step(closure)
    return offsets().detach()
