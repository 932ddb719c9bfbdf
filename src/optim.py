"""Adam with coupled L2 weight decay and global-norm clipping, and the compiled train step."""
import mindspore as ms
from mindspore import nn, ops, Parameter, ParameterTuple, Tensor

from src.amp import OverflowReset, finite_step
from src.distributed import RanksAgree

_adam_update = ops.MultitypeFuncGraph('adam_update')


@_adam_update.register('Number', 'Number', 'Number', 'Number', 'Tensor', 'Tensor', 'Tensor',
                       'Tensor', 'Tensor', 'Tensor', 'Tensor', 'Tensor')
def _update_one(beta1, beta2, eps, weight_decay, coef, lr_t, bc2_sqrt, apply, p, m, v, g):
    """Clip-scale, decay, Adam moments and update of one parameter (kept when not ``apply``)."""
    g = g * coef + weight_decay * p
    m_new = beta1 * m + (1.0 - beta1) * g
    v_new = beta2 * v + (1.0 - beta2) * ops.square(g)
    p_new = p - lr_t * m_new / (ops.sqrt(v_new) / bc2_sqrt + eps)
    ops.assign(m, ops.where(apply, m_new, m))
    ops.assign(v, ops.where(apply, v_new, v))
    ops.assign(p, ops.where(apply, p_new, p))
    return True


_fused_update = ops.MultitypeFuncGraph('fused_adam_update')
_ADAM = ops.Adam()


@_fused_update.register('Number', 'Number', 'Number', 'Tensor', 'Tensor', 'Tensor', 'Tensor',
                        'Tensor', 'Tensor', 'Tensor', 'Tensor', 'Tensor')
def _fused_one(beta1, beta2, weight_decay, coef, beta1_power, beta2_power, lr, eps, p, m, v, g):
    """The same update of one parameter by MindSpore's in-place Adam kernel."""
    _ADAM(p, m, v, beta1_power, beta2_power, lr, beta1, beta2, eps, g * coef + weight_decay * p)
    return True


class ClippedAdam(nn.Cell):
    """PyTorch-exact Adam (``torch.optim.Adam`` with ``weight_decay``) after ``clip_grad_norm_``.

    Per step: n = ||g||_2 over all tensors; g *= min(1, clip / (n + 1e-6)); g += wd * p;
    m, v moments; p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    ``construct(grads, lr, apply)`` returns the pre-clip norm; when ``apply`` is False (a
    non-finite loss or gradient) nothing changes, not even the step count.

    The per-parameter update is one function mapped over the parameters (``HyperMap``): an
    unrolled Python loop made MindSpore's side-effect pass (``updatestate_depend_eliminate``)
    take most of the train step's compilation (45 of 105 s at x4).

    ``prefix`` starts the names of the optimizer's own parameters (``moment1.*``, ``moment2.*``,
    ``adam_step``): two optimizers in one graph need different ones.

    ``fused``: update with MindSpore's in-place Adam kernel, p -= lr sqrt(1 - b2^t) / (1 - b1^t)
    * m / (sqrt(v) + eps'), which with eps' = eps sqrt(1 - b2^t) is the formula above (equal up
    to float32 rounding). The separate ops keep temporaries per parameter alive in the graph,
    which counts for IRN+'s 14.5M-parameter discriminator (its optimizer uses this).
    """

    def __init__(self, params, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, clip_norm=None,
                 prefix='', fused=False):
        super().__init__()
        self.params = ParameterTuple(params)
        self.moment1 = self.params.clone(prefix=prefix + 'moment1', init='zeros')
        self.moment2 = self.params.clone(prefix=prefix + 'moment2', init='zeros')
        self.step = Parameter(Tensor(0.0, ms.float32), name=prefix + 'adam_step',
                              requires_grad=False)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay = weight_decay
        self.clip_norm = clip_norm
        self.fused = fused
        self.hyper_map = ops.HyperMap()

    def global_norm(self, grads):
        """L2 norm of all gradients together."""
        total = 0.0
        for g in grads:
            total = total + ops.square(g).sum()
        return ops.sqrt(total)

    def construct(self, grads, lr, apply):
        norm = self.global_norm(grads)
        coef = ops.ones_like(norm)
        if self.clip_norm is not None:
            coef = ops.clamp(self.clip_norm / (norm + 1e-6), max=1.0)
        if self.fused:
            if apply:  # the in-place kernel cannot keep the old values: skip it instead
                step = self.step + 1.0
                beta1_power, beta2_power = ops.pow(self.beta1, step), ops.pow(self.beta2, step)
                update = ops.partial(_fused_update, self.beta1, self.beta2, self.weight_decay,
                                     coef, beta1_power, beta2_power, lr,
                                     self.eps * ops.sqrt(1.0 - beta2_power))
                self.hyper_map(update, self.params, self.moment1, self.moment2, grads)
                ops.assign(self.step, step)
            return norm
        step = self.step + ops.cast(apply, ms.float32)
        bc1 = 1.0 - ops.pow(self.beta1, step)
        bc2_sqrt = ops.sqrt(1.0 - ops.pow(self.beta2, step))
        update = ops.partial(_adam_update, self.beta1, self.beta2, self.eps, self.weight_decay,
                             coef, lr / bc1, bc2_sqrt, apply)
        self.hyper_map(update, self.params, self.moment1, self.moment2, grads)
        ops.assign(self.step, step)
        return norm


def build_optimizer(net, opt):
    """ClippedAdam over the trainable parameters with the config's ``train`` settings."""
    t = opt['train']
    return ClippedAdam(net.trainable_params(), t['beta1'], t['beta2'], t['eps'],
                       t['weight_decay_G'], t['gradient_clipping'])


class _ScaledObjective(nn.Cell):
    """``(loss * scale, loss, *terms)``: differentiating the first output gives the scaled
    gradient, the true values come along as auxiliary outputs."""

    def __init__(self, net_with_loss, loss_scale):
        super().__init__(auto_prefix=False)
        self.net_with_loss = net_with_loss
        self.loss_scale = loss_scale

    def construct(self, *inputs):
        out = self.net_with_loss(*inputs)
        return (self.loss_scale.scale(out[0]),) + out


class PlainGrad(nn.Cell):
    """``(outputs of net_with_loss, gradients of its first output)`` by autodiff of the whole
    objective (one graph). With ``loss_scale`` the gradients are of the scaled loss (they are
    unscaled by :class:`ApplyGradients`, after the all-reduce)."""

    def __init__(self, net_with_loss, weights, loss_scale=None):
        super().__init__(auto_prefix=False)
        self.scaled = loss_scale is not None
        self.net_with_loss = net_with_loss
        objective = net_with_loss if loss_scale is None else _ScaledObjective(net_with_loss,
                                                                             loss_scale)
        self.grad_fn = ops.value_and_grad(objective, None, weights, has_aux=True)

    def construct(self, *inputs):
        out, grads = self.grad_fn(*inputs)
        if self.scaled:
            return out[1:], grads
        return out, grads


class ApplyGradients(nn.Cell):
    """Everything after the gradients, as one graph: (all-reduce), (unscale), the finiteness
    check (:func:`src.amp.finite_step`) agreed by all ranks, clipping and the optimizer
    update, (loss-scale update).

    ``construct(grads, loss, lr)`` -> ``(grad_norm, applied)``: the pre-clip norm and whether
    the update was applied (a non-finite loss, gradient or norm on any rank skips it on all).
    """

    def __init__(self, optimizer, grad_reducer=None, loss_scale=None):
        super().__init__(auto_prefix=False)
        self.optimizer = optimizer
        self.grad_reducer = grad_reducer
        self.loss_scale = loss_scale
        self.agree = RanksAgree('all') if grad_reducer is not None else None

    def construct(self, grads, loss, lr):
        if self.grad_reducer is not None:
            grads = self.grad_reducer(grads)
        if self.loss_scale is not None:
            grads = self.loss_scale.unscale(grads)
        norm = self.optimizer.global_norm(grads)
        ok = finite_step(loss, grads, norm)
        if self.agree is not None:
            ok = self.agree(ok)
        norm = self.optimizer(grads, lr, ok)
        if self.loss_scale is not None:
            ok = ops.depend(ok, self.loss_scale.adjust(ok))
        return norm, ok


class TrainStep(nn.Cell):
    """One optimisation step as one graph: losses, gradients, then :class:`ApplyGradients`.

    ``construct(*inputs, lr)`` -> ``(loss, *other_terms, grad_norm, applied)``: ``inputs`` are
    what ``net_with_loss`` takes (IRN: hr, lr_ref, z_noise), whose outputs are the total loss
    followed by the logged terms. ``grad_reducer`` is an ``nn.DistributedGradReducer`` in
    data-parallel runs, None otherwise; ``loss_scale`` an optional :class:`src.amp.LossScale`
    (amp O1).
    """

    def __init__(self, net_with_loss, optimizer, grad_reducer=None, loss_scale=None):
        super().__init__(auto_prefix=False)
        self.weights = optimizer.params
        self.grads = PlainGrad(net_with_loss, self.weights, loss_scale)
        self.update = ApplyGradients(optimizer, grad_reducer, loss_scale)
        self.reset = OverflowReset()

    def construct(self, *args):
        inputs = (self.reset(args[0]),) + args[1:-1]
        terms, grads = self.grads(*inputs)
        norm, ok = self.update(grads, terms[0], args[-1])
        return terms + (norm, ok)


def resolve_memory_mode(mode, target=None):
    """``auto`` -> ``recompute`` on CPU with MindSpore's Conv2D (its CPU runtime keeps large
    buffers per graph: about 20 GB at x4 batch 4), else ``plain``: with the fast CPU conv
    (measured fastest there, and small) and on GPU / Ascend, whose graph compiler plans and
    reuses device memory for the one graph (README: memory modes). ``target`` defaults to
    the current device."""
    if mode != 'auto':
        return mode
    from src.network.fast_conv import backend
    target = target or ms.get_context('device_target')
    return 'recompute' if target == 'CPU' and backend() == 'mindspore' else 'plain'


def build_train_step(net_with_loss, optimizer, opt, grad_reducer=None, loss_scale=None):
    """The train step the config asks for (``train.memory_mode``, ``train.micro_batch``).

    Every variant is called as ``step(*inputs, lr)`` (IRN: hr, lr_ref, z_noise) and returns
    ``(loss, *terms, grad_norm, applied)``; all compute the same update and differ only in
    memory and time (see src/backprop.py). ``loss_scale``: see :class:`TrainStep`.
    """
    from src.backprop import AccumulatingStep, BlockwiseGrad
    mode = resolve_memory_mode(opt['train']['memory_mode'])
    micro = opt['train']['micro_batch']  # None: the (per-device) batch at once
    if mode == 'plain' and micro is None:
        return TrainStep(net_with_loss, optimizer, grad_reducer, loss_scale)
    if mode == 'plain':
        source = PlainGrad(net_with_loss, optimizer.params, loss_scale)
    else:
        source = BlockwiseGrad(net_with_loss, store_inputs=(mode == 'recompute'),
                               loss_scale=loss_scale)
    return AccumulatingStep(source, optimizer, micro, grad_reducer, loss_scale)


class PairTrainStep(nn.Cell):
    """One step of two networks under one loss, each with its own optimizer.

    ``construct(*inputs, lr_a, lr_b)`` -> ``(*losses, norm_a, norm_b, applied)``: the gradients
    of ``net_with_loss(*inputs)[0]`` w.r.t. both optimizers' parameters, each group clipped on
    its own norm and updated with its own learning rate (the authors' joint IRN + CRM step
    clips G and the CRM separately). A non-finite loss, gradient or norm
    (:func:`src.amp.finite_step`) skips both updates. One device only: no reducer.
    """

    def __init__(self, net_with_loss, optimizer_a, optimizer_b):
        super().__init__(auto_prefix=False)
        if optimizer_a.step.name == optimizer_b.step.name:
            raise ValueError('the two optimizers need different parameter prefixes')
        self.net_with_loss = net_with_loss
        self.optimizer_a, self.optimizer_b = optimizer_a, optimizer_b
        self.size_a = len(optimizer_a.params)
        params = ParameterTuple(list(optimizer_a.params) + list(optimizer_b.params))
        self.grad_fn = ops.value_and_grad(net_with_loss, None, params, has_aux=True)
        self.reset = OverflowReset()

    def construct(self, *args):
        inputs = (self.reset(args[0]),) + args[1:-2]
        losses, grads = self.grad_fn(*inputs)
        grads_a, grads_b = grads[:self.size_a], grads[self.size_a:]
        ok = ops.logical_and(finite_step(losses[0], grads, self.optimizer_a.global_norm(grads_a)),
                             ops.isfinite(self.optimizer_b.global_norm(grads_b)))
        norm_a = self.optimizer_a(grads_a, args[-2], ok)
        norm_b = self.optimizer_b(grads_b, args[-1], ok)
        return losses + (norm_a, norm_b, ok)
