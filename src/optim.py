"""Adam with coupled L2 weight decay and global-norm clipping, and the compiled train step."""
import mindspore as ms
from mindspore import nn, ops, Parameter, ParameterTuple, Tensor


class ClippedAdam(nn.Cell):
    """PyTorch-exact Adam (``torch.optim.Adam`` with ``weight_decay``) after ``clip_grad_norm_``.

    Per step: n = ||g||_2 over all tensors; g *= min(1, clip / (n + 1e-6)); g += wd * p;
    m, v moments; p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
    ``construct(grads, lr, apply)`` returns the pre-clip norm; when ``apply`` is False (a
    non-finite loss or gradient) nothing changes, not even the step count.
    """

    def __init__(self, params, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, clip_norm=None):
        super().__init__()
        self.params = ParameterTuple(params)
        self.moment1 = self.params.clone(prefix='moment1', init='zeros')
        self.moment2 = self.params.clone(prefix='moment2', init='zeros')
        self.step = Parameter(Tensor(0.0, ms.float32), name='adam_step', requires_grad=False)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.weight_decay = weight_decay
        self.clip_norm = clip_norm

    def global_norm(self, grads):
        """L2 norm of all gradients together."""
        total = 0.0
        for g in grads:
            total = total + ops.square(g).sum()
        return ops.sqrt(total)

    def construct(self, grads, lr, apply):
        norm = self.global_norm(grads)
        coef = 1.0
        if self.clip_norm is not None:
            coef = ops.clamp(self.clip_norm / (norm + 1e-6), max=1.0)
        step = self.step + ops.select(apply, 1.0, 0.0)
        bc1 = 1.0 - ops.pow(self.beta1, step)
        bc2_sqrt = ops.sqrt(1.0 - ops.pow(self.beta2, step))
        for p, m, v, g in zip(self.params, self.moment1, self.moment2, grads):
            g = g * coef + self.weight_decay * p
            m_new = self.beta1 * m + (1.0 - self.beta1) * g
            v_new = self.beta2 * v + (1.0 - self.beta2) * ops.square(g)
            p_new = p - (lr / bc1) * m_new / (ops.sqrt(v_new) / bc2_sqrt + self.eps)
            ops.assign(m, ops.select(apply, m_new, m))
            ops.assign(v, ops.select(apply, v_new, v))
            ops.assign(p, ops.select(apply, p_new, p))
        ops.assign(self.step, step)
        return norm


def build_optimizer(net, opt):
    """ClippedAdam over the trainable parameters with the config's ``train`` settings."""
    t = opt['train']
    return ClippedAdam(net.trainable_params(), t['beta1'], t['beta2'], t['eps'],
                       t['weight_decay_G'], t['gradient_clipping'])


class TrainStep(nn.Cell):
    """One optimisation step: losses, gradients, (all-reduce), clipping, Adam.

    ``construct(*inputs, lr)`` -> ``(*outputs, grad_norm, applied)``, where ``outputs`` is
    what ``net_with_loss(*inputs)`` returns: the loss to differentiate first, then logged
    values (for IRN: ``(hr, lr_ref, z_noise, lr)`` -> ``(loss, l_fit, l_ce, l_rec, grad_norm,
    applied)``). Gradients are taken with respect to the optimizer's parameters only.
    ``grad_reducer`` is an ``nn.DistributedGradReducer`` in data-parallel runs, identity
    otherwise. A non-finite loss or gradient norm skips the update (``applied`` is False).
    """

    def __init__(self, net_with_loss, optimizer, grad_reducer=None):
        super().__init__(auto_prefix=False)
        self.net_with_loss = net_with_loss
        self.optimizer = optimizer
        self.weights = optimizer.params
        self.grad_fn = ops.value_and_grad(net_with_loss, None, self.weights, has_aux=True)
        self.grad_reducer = grad_reducer if grad_reducer is not None else ops.identity

    def construct(self, *args):
        outputs, grads = self.grad_fn(*args[:-1])
        grads = self.grad_reducer(grads)
        norm = self.optimizer.global_norm(grads)
        ok = ops.logical_and(ops.isfinite(outputs[0]), ops.isfinite(norm))
        norm = self.optimizer(grads, args[-1], ok)
        return outputs + (norm, ok)


def resolve_memory_mode(mode):
    """``auto`` -> ``plain`` with the fast CPU convolution (measured fastest there, and small),
    else ``recompute`` (MindSpore's own Conv2D/Concat keep large buffers per graph)."""
    if mode != 'auto':
        return mode
    from src.network.fast_conv import backend
    return 'plain' if backend() == 'dnnl' else 'recompute'


def build_train_step(net_with_loss, optimizer, opt, grad_reducer=None):
    """The train step the config asks for (``train.memory_mode``, ``train.micro_batch``).

    Every variant is called as ``step(hr, lr_ref, z_noise, lr)`` and returns
    ``(loss, l_fit, l_ce, l_rec, grad_norm, applied)``; all compute the same update and differ
    only in memory and time (see src/backprop.py).
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
