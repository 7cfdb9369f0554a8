"""LeanLearner calls exactly what fastai's Learner calls; FusedAdam is fastai's Adam step."""

import fastai.callback.progress  # noqa: F401 -- Learner.no_bar and no_logging
import pytest
import torch
from fastai.callback.core import Callback
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.optimizer import Adam
from torch import nn

from paddy.collab.loop import FusedAdam, LeanLearner
from paddy.collab.train import TensorLoader


class Everything(Callback):
    """Records every event it is offered and that it runs."""

    order = 5

    def __init__(self, log):
        super().__init__()
        self.log = log

    def __call__(self, event_name):
        self.log.append(("everything", event_name))
        return super().__call__(event_name)


class ValidOnly(Callback):
    """Defines one inner-loop event and runs it only during validation."""

    order, run_train = 10, False

    def __init__(self, log):
        super().__init__()
        self.log = log

    def after_batch(self):
        self.log.append(("valid_only", "after_batch", self.training))


class StopsItself(Callback):
    """Turns itself off after the first batch (`run = False`), as fastai's callbacks may."""

    order = 20

    def __init__(self, log):
        super().__init__()
        self.log = log

    def after_batch(self):
        self.log.append(("stops_itself", "after_batch"))
        self.run = False


def _fit(learner_class, extra_cb_during_fit):
    torch.manual_seed(0)
    x, y = torch.randn(40, 3), torch.randn(40)
    dls = DataLoaders(TensorLoader(x[:32], y[:32], bs=8, shuffle=True, seed=1), TensorLoader(x[32:], y[32:], bs=8))
    log = []
    model = nn.Sequential(nn.Linear(3, 1), nn.Flatten(0))
    learn = learner_class(dls, model, loss_func=nn.functional.mse_loss, opt_func=Adam,
                          cbs=[Everything(log), ValidOnly(log),
                               Callback(after_step=lambda cb: log.append(("instance", "after_step")))])
    cbs = [StopsItself(log)] if extra_cb_during_fit else []
    with learn.no_bar(), learn.no_logging():
        learn.fit(2, 1e-2, cbs=cbs)
        learn.fit(1, 1e-2)  # after fit's own callbacks are removed again
    return log, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("extra_cb_during_fit", [False, True])
def test_lean_learner_runs_the_same_callbacks_in_the_same_order_as_fastais(extra_cb_during_fit):
    fastai_log, fastai_params = _fit(Learner, extra_cb_during_fit)
    lean_log, lean_params = _fit(LeanLearner, extra_cb_during_fit)
    assert lean_log == fastai_log
    assert ("instance", "after_step") in lean_log  # an event given as Callback(after_step=f)
    assert ("valid_only", "after_batch", True) not in lean_log and ("valid_only", "after_batch", False) in lean_log
    # added for the first fit only, and off after its first batch
    assert lean_log.count(("stops_itself", "after_batch")) == (1 if extra_cb_during_fit else 0)
    for ours, theirs in zip(lean_params, fastai_params, strict=True):
        assert torch.equal(ours, theirs)


def _adam_steps(opt_func, decouple_wd, steps=5):
    torch.manual_seed(0)
    weight, bias = nn.Parameter(torch.randn(6, 4)), nn.Parameter(torch.randn(4))
    opt = opt_func([weight, bias], lr=1e-2, mom=0.9, sqr_mom=0.99, eps=1e-5, wd=0.3, decouple_wd=decouple_wd)
    opt.state[bias]["do_wd"] = False  # as Learner.create_opt marks biases when wd_bn_bias is False
    for step in range(steps):
        opt.set_hyper("lr", 1e-2 * (step + 1))  # as fit_one_cycle moves lr and mom every batch
        opt.set_hyper("mom", 0.95 - 0.02 * step)
        loss = (weight.sum(0) * bias).pow(2).sum() + weight.pow(3).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
    return weight.detach(), bias.detach()


@pytest.mark.parametrize("decouple_wd", [True, False])
def test_fused_adam_steps_like_fastais_adam_with_scheduled_hypers_and_no_decay_params(decouple_wd):
    ours, theirs = _adam_steps(FusedAdam, decouple_wd), _adam_steps(Adam, decouple_wd)
    for mine, reference in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-6)



def _tiny_learner(learner_class, cbs=()):
    torch.manual_seed(0)
    x, y = torch.randn(40, 3), torch.randn(40)
    dls = DataLoaders(TensorLoader(x[:32], y[:32], bs=8), TensorLoader(x[32:], y[32:], bs=8))
    return learner_class(dls, nn.Sequential(nn.Linear(3, 1), nn.Flatten(0)), loss_func=nn.functional.mse_loss,
                         opt_func=Adam, cbs=list(cbs))


@pytest.mark.parametrize("learner_class", [Learner, LeanLearner])
def test_a_callback_that_turned_itself_off_runs_again_in_the_next_fit(learner_class):
    log = []
    learn = _tiny_learner(learner_class, [StopsItself(log)])  # defines after_batch only, not after_fit
    with learn.no_bar(), learn.no_logging():
        learn.fit(1)
        learn.fit(1)
    assert log.count(("stops_itself", "after_batch")) == 2  # fastai's Callback resets `run` at every after_fit


class FiresNothing(Callback):
    """Defines only an event a normal fit never fires."""

    def after_cancel_fit(self):
        pass


class CountsFits(Callback):
    """Counts the fits it saw start."""

    def __init__(self, log):
        super().__init__()
        self.log = log

    def before_fit(self):
        self.log.append("before_fit")


def test_a_new_callback_is_never_skipped_for_one_that_was_removed():
    # A fit's callback is freed after the fit and the next fit's may be allocated at its address: a cache keyed on
    # ids alone, not holding the old callback, took the new one for the old and skipped its events.
    log = []
    learn = _tiny_learner(LeanLearner)
    with learn.no_bar(), learn.no_logging():
        for _ in range(20):
            learn.fit(1, cbs=FiresNothing())
            learn.fit(1, cbs=CountsFits(log))
    assert log == ["before_fit"] * 20


def test_an_unknown_event_name_is_an_error_as_in_fastai():
    with pytest.raises(Exception, match="missing before_fitt"):
        _tiny_learner(LeanLearner)("before_fitt")
