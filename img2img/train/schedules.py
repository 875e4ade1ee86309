"""Learning-rate schedules (the reference's --lr-policy), stepped once per epoch."""

from __future__ import annotations

import torch

from img2img.train.config import TrainConfig


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The reference's policies, stepped once per epoch. linear: constant for n_epochs, then
    linearly to nearly 0 over n_epochs_decay; step: x0.1 every lr_decay_iters epochs; cosine:
    cosine annealing to 0 over all epochs."""
    if config.lr_policy == "linear":
        n_epochs, n_decay = config.n_epochs, config.n_epochs_decay

        def linear(epoch: int) -> float:
            return 1.0 - max(0, epoch + 1 - n_epochs) / float(n_decay + 1)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, linear)
    if config.lr_policy == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.lr_decay_iters, gamma=0.1)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.total_epochs, eta_min=0)


def refresh_learning_rate(scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """Set the optimizer's rates to what ``scheduler`` gives at its current epoch (used when a
    resumed run's schedule changed length)."""
    epoch = scheduler.last_epoch
    if isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
        rates = [base * fn(epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas)]
    elif hasattr(scheduler, "_get_closed_form_lr"):
        rates = scheduler._get_closed_form_lr()
    else:
        return
    for group, rate in zip(scheduler.optimizer.param_groups, rates):
        group["lr"] = rate
    scheduler._last_lr = list(rates)
