"""Adam with coupled L2 weight decay and global-norm clipping, and the compiled train step."""
import mindspore as ms
from mindspore import nn, ops, Parameter, ParameterTuple, Tensor

_adam_update = ops.MultitypeFuncGraph('adam_update')


@_adam_update.register('Number', 'Number', 'Number', 'Number', 'Tensor', 'Tensor', 'Tensor',
                       'Tensor', 'Tensor', 'Tensor', 'Tensor', 'Tensor')
def _update_one(beta1, beta2, eps, weight_decay, coef, lr_t, bc2_sqrt, apply, p, m, v, g):
    """Clip-scale, decay, Adam moments and update of one parameter (kept when not ``apply``)."""
    g = g * coef + weight_decay * p
    m_new = beta1 * m + (1.0 - beta1) * g
    v_new = beta2 * v + (1.0 - beta2) * ops.square(g)
    p_new = p - lr_t * m_new / (ops.sqrt(v_new) / bc2_sqrt + eps)
    ops.assign(m, ops.select(apply, m_new, m))
    ops.assign(v, ops.select(apply, v_new, v))
    ops.assign(p, ops.select(apply, p_new, p))
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
    """

    def __init__(self, params, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, clip_norm=None,
                 prefix=''):
        super().__init__()
        self.params = ParameterTuple(params)
        self.moment1 = self.params.clone(prefix=prefix + 'moment1', init='zeros')
        self.moment2 = self.params.clone(prefix=prefix + 'moment2', init='zeros')
        self.step = Parameter(Tensor(0.0, ms.float32), name=prefix + 'adam_step',
                              requires_grad=False)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay = weight_decay
        self.clip_norm = clip_norm
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
        step = self.step + ops.select(apply, 1.0, 0.0)
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


class TrainStep(nn.Cell):
    """One optimisation step: losses, gradients, (all-reduce), clipping, Adam.

    ``construct(*inputs, lr)`` -> ``(loss, *other_terms, grad_norm, applied)``: ``inputs`` are
    what ``net_with_loss`` takes (IRN: hr, lr_ref, z_noise), whose outputs are the total loss
    followed by the logged terms. ``grad_reducer`` is an ``nn.DistributedGradReducer`` in
    data-parallel runs, identity otherwise. A non-finite loss or gradient norm skips the update
    (``applied`` is False).
    """

    def __init__(self, net_with_loss, optimizer, grad_reducer=None):
        super().__init__(auto_prefix=False)
        self.net_with_loss = net_with_loss
        self.optimizer = optimizer
        self.weights = optimizer.params
        self.grad_fn = ops.value_and_grad(net_with_loss, None, self.weights, has_aux=True)
        self.grad_reducer = grad_reducer if grad_reducer is not None else ops.identity

    def construct(self, *args):
        terms, grads = self.grad_fn(*args[:-1])
        grads = self.grad_reducer(grads)
        norm = self.optimizer.global_norm(grads)
        ok = ops.logical_and(ops.isfinite(terms[0]), ops.isfinite(norm))
        norm = self.optimizer(grads, args[-1], ok)
        return terms + (norm, ok)


def resolve_memory_mode(mode):
    """``auto`` -> ``plain`` with the fast CPU convolution (measured fastest there, and small),
    else ``recompute`` (MindSpore's own Conv2D/Concat keep large buffers per graph)."""
    if mode != 'auto':
        return mode
    from src.network.fast_conv import backend
    return 'plain' if backend() == 'dnnl' else 'recompute'


def build_train_step(net_with_loss, optimizer, opt, grad_reducer=None):
    """The train step the config asks for (``train.memory_mode``, ``train.micro_batch``).

    Every variant is called as ``step(*inputs, lr)`` (IRN: hr, lr_ref, z_noise) and returns
    ``(loss, *terms, grad_norm, applied)``; all compute the same update and differ only in
    memory and time (see src/backprop.py).
    """
    from src.backprop import AccumulatingStep, BlockwiseGrad, PlainGrad
    mode = resolve_memory_mode(opt['train']['memory_mode'])
    micro = opt['train']['micro_batch']  # None: the (per-device) batch at once
    if mode == 'plain' and micro is None:
        return TrainStep(net_with_loss, optimizer, grad_reducer)
    if mode == 'plain':
        source = PlainGrad(net_with_loss, optimizer.params)
    else:
        source = BlockwiseGrad(net_with_loss, store_inputs=(mode == 'recompute'))
    return AccumulatingStep(source, optimizer, micro, grad_reducer)


class PairTrainStep(nn.Cell):
    """One step of two networks under one loss, each with its own optimizer.

    ``construct(*inputs, lr_a, lr_b)`` -> ``(*losses, norm_a, norm_b, applied)``: the gradients
    of ``net_with_loss(*inputs)[0]`` w.r.t. both optimizers' parameters, each group clipped on
    its own norm and updated with its own learning rate (the authors' joint IRN + CRM step
    clips G and the CRM separately). A non-finite loss or norm skips both updates.
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

    def construct(self, *args):
        losses, grads = self.grad_fn(*args[:-2])
        grads_a, grads_b = grads[:self.size_a], grads[self.size_a:]
        ok = ops.logical_and(ops.isfinite(losses[0]), ops.logical_and(
            ops.isfinite(self.optimizer_a.global_norm(grads_a)),
            ops.isfinite(self.optimizer_b.global_norm(grads_b))))
        norm_a = self.optimizer_a(grads_a, args[-2], ok)
        norm_b = self.optimizer_b(grads_b, args[-1], ok)
        return losses + (norm_a, norm_b, ok)
