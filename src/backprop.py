"""Memory-saving gradient computation for IRN: block-wise recomputation and invertible backprop.

The plain step (``optim.TrainStep``) differentiates the whole objective as one graph, which keeps
every activation of every DenseBlock alive until the backward pass. Here Python drives small
compiled graphs instead, one per block and direction, and the backward pass walks the chain
block by block, each time recomputing just that block's internals (a local vector-Jacobian
product):

* ``recompute``: the block inputs (a few MB) are stored during the forward pass;
* ``invertible``: nothing is stored: each block's input is rebuilt from its output with the
  exact inverse (the forward chain is undone with ``inverse``, the upscaling chain with
  ``construct``), so activation memory no longer grows with the number of blocks.

Both compute the same gradients as the plain step (up to float rounding). ``AccumulatingStep``
adds exact gradient accumulation over micro-batches for any of the modes.
"""
import mindspore as ms
from mindspore import mutable, nn, ops

from src.amp import OverflowReset
from src.optim import ApplyGradients, PlainGrad  # noqa: F401  (PlainGrad: a grad source)
from src.utils.errors import IRNError

MODES = ('plain', 'recompute', 'invertible')
PROTOCOL = ('construct', 'inverse', 'weights', 'apply', 'graph_key')


def _check_protocol(op):
    """Every op of ``net.operations`` is invertible and a pure function of (x, weights)."""
    missing = [m for m in PROTOCOL if not callable(getattr(op, m, None))]
    if missing:
        raise IRNError(f'{type(op).__name__} cannot run block-wise (train.memory_mode recompute / '
                       f'invertible): it lacks {", ".join(missing)}')


class _Apply(nn.Cell):
    """One direction of an invertible op as a function of (input, weights): one graph serves
    every op with the same ``graph_key()``. (MindSpore keeps each compiled graph's working
    memory, so per-block graphs would add up to as much memory as the plain step.)"""

    def __init__(self, op, inverse):
        super().__init__(auto_prefix=False)
        self.op = op  # only its non-tensor settings are used; the weights come in as inputs
        self.is_inverse = inverse

    def construct(self, x, weights):
        return self.op.apply(x, weights, self.is_inverse)


class _Direction(nn.Cell):
    """One direction of a parameter-free op (Haar) as a function of its input alone."""

    def __init__(self, op, inverse):
        super().__init__(auto_prefix=False)
        self.op = op
        self.is_inverse = inverse

    def construct(self, x):
        return self.op.apply(x, (), self.is_inverse)


class _ApplyVJP(nn.Cell):
    """(input, weights, cotangent of the output) -> (cotangent of the input, weight gradients)."""

    def __init__(self, op, inverse):
        super().__init__(auto_prefix=False)
        self.fn = _Apply(op, inverse)
        self.grad = ops.GradOperation(get_all=True, sens_param=True)

    def construct(self, x, weights, d_out):
        return self.grad(self.fn)(x, weights, d_out)


class _LinearVJP(nn.Cell):
    """Cotangent map of a parameter-free op (Haar): its transpose, via autodiff."""

    def __init__(self, op, inverse):
        super().__init__(auto_prefix=False)
        self.fn = _Direction(op, inverse)
        self.grad = ops.GradOperation(sens_param=True)

    def construct(self, x, d_out):
        return self.grad(self.fn)(x, d_out)


class _ForwardHead(nn.Cell):
    """Forward output -> (l_fit, l_ce, input of the upscaling pass)."""

    def __init__(self, loss):
        super().__init__(auto_prefix=False)
        self.loss = loss

    def construct(self, out, lr_ref, z_noise):
        l_fit, l_ce = self.loss.forward_terms(out, lr_ref)
        return l_fit, l_ce, self.loss.backward_input(out, z_noise)


class _HeadObjective(nn.Cell):
    """(l_fit + l_ce) * scale + <upscaling input, its cotangent>: its gradient is the forward
    output's (the cotangent already carries the loss scale)."""

    def __init__(self, loss):
        super().__init__(auto_prefix=False)
        self.loss = loss

    def construct(self, out, lr_ref, z_noise, d_back, scale):
        l_fit, l_ce = self.loss.forward_terms(out, lr_ref)
        back = self.loss.backward_input(out, z_noise)
        return (l_fit + l_ce) * scale + (back * ops.stop_gradient(d_back)).sum()


class _HeadGrad(nn.Cell):
    def __init__(self, loss):
        super().__init__(auto_prefix=False)
        self.objective = _HeadObjective(loss)
        self.grad = ops.GradOperation()

    def construct(self, out, lr_ref, z_noise, d_back, scale):
        return self.grad(self.objective)(out, lr_ref, z_noise, d_back, scale)


class _RecHead(nn.Cell):
    """Upscaled output -> (l_rec, its gradient times the loss scale)."""

    def __init__(self, loss):
        super().__init__(auto_prefix=False)
        self.loss = loss
        self.grad = ops.GradOperation(get_all=True)

    def construct(self, hr, rec, scale):
        return (self.loss.reconstruction(hr, rec),
                self.grad(self.loss.reconstruction)(hr, rec)[1] * scale)


class BlockwiseGrad:
    """Loss values and weight gradients of the IRN objective, block by block.

    Calling it with ``(hr, lr_ref, z_noise)`` returns ``((loss, l_fit, l_ce, l_rec), grads)``
    with ``grads`` ordered like ``net.trainable_params()``.

    Args:
        net_with_loss (IRNWithLoss): supplies the network and the loss terms.
        store_inputs (bool): keep block inputs (``recompute``) or rebuild them (``invertible``).
        loss_scale (LossScale): optional (amp O1): the backward pass starts from the scaled
            cotangents, so every block's gradients are scaled (:class:`ApplyGradients`
            unscales them after the all-reduce).
    """

    def __init__(self, net_with_loss, store_inputs, loss_scale=None):
        net, loss = net_with_loss.net, net_with_loss.loss
        self.store_inputs = store_inputs
        self.loss_scale = loss_scale
        self.unit = ms.Tensor(1.0, ms.float32)  # the scale without loss scaling (exact)
        self.ops = list(net.operations)
        shared = {}
        position = {p.name: i for i, p in enumerate(net.trainable_params())}
        self.num_params = len(position)
        self.forward, self.inverse, self.vjp_forward, self.vjp_inverse = [], [], [], []
        self.weights, self.slots = [], []
        for op in self.ops:
            _check_protocol(op)
            weights = tuple(op.weights())
            key = op.graph_key()
            if key not in shared:  # the first op of a kind stands for all of them
                kinds = (_Apply, _ApplyVJP) if weights else (_Direction, _LinearVJP)
                shared[key] = [cls(op, inverse) for cls in kinds for inverse in (False, True)]
            fwd, inv, vjp_fwd, vjp_inv = shared[key]
            self.forward.append(fwd)
            self.inverse.append(inv)
            self.vjp_forward.append(vjp_fwd)
            self.vjp_inverse.append(vjp_inv)
            self.weights.append(weights)
            self.slots.append([position.get(p.name) for p in weights])  # None: frozen
        self.head, self.head_grad, self.rec_head = _ForwardHead(loss), _HeadGrad(loss), _RecHead(loss)

    def _accumulate(self, grads, k, d_weights):
        for slot, g in zip(self.slots[k], d_weights):
            if slot is not None:
                grads[slot] = g if grads[slot] is None else grads[slot] + g

    def _run(self, cells, k, x):
        if self.weights[k]:
            return cells[k](x, mutable(self.weights[k]))
        return cells[k](x)

    def _step_back(self, vjp, k, x, d, grads):
        if self.weights[k]:
            d, d_weights = vjp[k](x, mutable(self.weights[k]), d)
            self._accumulate(grads, k, d_weights)
            return d
        return vjp[k](x, d)

    def __call__(self, hr, lr_ref, z_noise):
        n = len(self.ops)
        kept_forward, kept_inverse = [], []
        h = hr
        for k in range(n):
            if self.store_inputs:
                kept_forward.append(h)
            h = self._run(self.forward, k, h)
        out = h
        l_fit, l_ce, back = self.head(out, lr_ref, z_noise)
        h = back
        for k in reversed(range(n)):
            if self.store_inputs:
                kept_inverse.append(h)
            h = self._run(self.inverse, k, h)
        scale = self.unit if self.loss_scale is None else self.loss_scale.value
        l_rec, d = self.rec_head(hr, h, scale)

        grads = [None] * self.num_params
        # Upscaling chain, undone from its output: the input of inverse[k] is forward[k](its output).
        for k in range(n):
            x = kept_inverse[n - 1 - k] if self.store_inputs else self._run(self.forward, k, h)
            d = self._step_back(self.vjp_inverse, k, x, d, grads)
            h = x
        d = self.head_grad(out, lr_ref, z_noise, d, scale)
        # Downscaling chain, from the output back: the input of forward[k] is inverse[k](its output).
        h = out
        for k in reversed(range(n)):
            x = kept_forward[k] if self.store_inputs else self._run(self.inverse, k, h)
            d = self._step_back(self.vjp_forward, k, x, d, grads)
            h = x
        return (l_fit + l_ce + l_rec, l_fit, l_ce, l_rec), tuple(grads)


class AccumulatingStep:
    """A train step computing gradients in micro-batches with ``grad_source``, then one update.

    The objective is a batch mean of per-image terms, so the batch gradient is the mean of the
    equal-sized micro-batch gradients; clipping and weight decay then apply once, as in the
    plain step. Same call and results as ``optim.TrainStep``. ``loss_scale``: the
    :class:`src.amp.LossScale` the grad source was built with (None: no loss scaling).
    """

    def __init__(self, grad_source, optimizer, micro_batch=None, grad_reducer=None,
                 loss_scale=None):
        self.grad_source = grad_source
        self.apply = ApplyGradients(optimizer, grad_reducer, loss_scale)
        self.micro_batch = micro_batch
        self.reset = OverflowReset()

    def __call__(self, *args):
        inputs, lr = args[:-1], args[-1]  # every input is batch-first
        batch = inputs[0].shape[0]
        m = self.micro_batch or batch
        if batch % m:
            raise IRNError(f'train.micro_batch {m} does not divide the batch of {batch} images '
                           'this device computes (datasets.train.batch_size / devices)')
        chunks = batch // m
        if self.reset.enabled:  # Ascend saturation mode: this step's overflows only
            inputs = (self.reset(inputs[0]),) + tuple(inputs[1:])
        losses, grads = None, None
        for i in range(chunks):
            part = slice(i * m, (i + 1) * m)
            l_i, g_i = self.grad_source(*[t[part] for t in inputs])
            if grads is None:
                losses, grads = list(l_i), list(g_i)
            else:
                losses = [a + b for a, b in zip(losses, l_i)]
                grads = [a + b for a, b in zip(grads, g_i)]
        if chunks > 1:
            losses = [v / chunks for v in losses]
            grads = [g / chunks for g in grads]
        norm, ok = self.apply(mutable(tuple(grads)), losses[0], lr)  # mutable: no recompiling
        return (*losses, norm, ok)
