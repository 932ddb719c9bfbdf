"""What every model of the family provides to train.py, val.py, export.py and infer.py.

A model is one entry of the registry (``src/models/__init__.py``). It knows its config keys,
builds its network(s), runs one training iteration (however many graphs, optimizers and codec
calls that takes), says what its training state is made of, and evaluates, exports and runs
inference for its checkpoints. The loop around it (data, learning rates, logging, resume,
signals) is :class:`src.trainer.Trainer` and is the same for every model.
"""
import numpy as np
import mindspore as ms

from src.metrics import mean_metrics
from src.utils.checkpoint import (check_arch, describe_arch, load_into, load_weights,
                                  read_checkpoint, save_weights)
from src.utils.errors import IRNError

__all__ = ['Model']


class Model:
    """Base class of the family's models.

    Class attributes a subclass sets:
        name (str): the config's ``model:`` value (the authors' name).
        SCHEMA (dict): config keys this model adds to (or redefines in) ``src.config.SCHEMA``.
        CHOICES (dict): allowed values of keys (dotted name -> tuple), added to the shared ones.
        loss_names (tuple): the logged terms of :meth:`train_step`, in log order.
        val_fields (tuple): the metrics :meth:`validate` returns (columns of val.csv).
        best_metric (str): the metric (higher is better) that selects ``best_G.ckpt``.

    Args:
        opt (dict): parsed config.
        rank_id, rank_size (int): data-parallel rank and world size.
    """

    name = None
    SCHEMA = {}
    CHOICES = {}
    loss_names = ()
    val_fields = ()
    best_metric = None

    def __init__(self, opt, rank_id=0, rank_size=1):
        self.opt, self.rank_id, self.rank_size = opt, rank_id, rank_size
        self.net = None

    # ------------------------------------------------------------------ config
    @classmethod
    def check_config(cls, opt, source):
        """Validate this model's keys against each other; fill derived defaults (in place)."""

    @classmethod
    def default_layout(cls, opt, scale):
        """Set the network layout for ``--scale`` when no config file is given (in place)."""

    @classmethod
    def add_arguments(cls, parser, tool):
        """Add this model's own flags to the parser of ``tool`` ('val', 'infer', 'export')."""

    @classmethod
    def test_config(cls, arch):
        """The evaluation config for a checkpoint of architecture ``arch`` (None: defaults)."""
        return None

    # ------------------------------------------------------------------ networks
    def build_net(self, arch=None):
        """The main network: from the config's layout, or from a checkpoint's ``arch`` record."""
        raise NotImplementedError

    def arch(self, net=None):
        """The record a checkpoint of ``net`` (default: the trained one) carries."""
        return {'model': self.name, **(net or self.net).arch()}

    @classmethod
    def torch_arch(cls, state, path):
        """The architecture record of an authors' state_dict if it is this model's, else None
        (how a bare .pth is recognised)."""
        try:
            return cls.from_torch(state, path)[1]
        except IRNError:
            return None

    @classmethod
    def from_torch(cls, state, path):
        """The authors' state_dict -> (our weights, architecture record); see src/convert.py."""
        raise IRNError(f"{path}: reading the authors' .pth is not supported for {cls.name}")

    def load_net(self, ckpt, expect_scale=None):
        """Build the main network with the architecture ``ckpt`` records and load it.

        An authors' .pth is mapped by :meth:`from_torch`; a file that records no architecture
        gets the config's layout. ``expect_scale``: a checkpoint of another scale is an IRNError
        naming the file, and so is a checkpoint of another model or layout.
        """
        if not ckpt:
            raise IRNError(f'no checkpoint given (--ckpt X.ckpt or an authors\' .pth for {self.name})')
        weights, stored = read_checkpoint(ckpt, self.from_torch)
        if stored and stored.get('model') not in (None, self.name):
            raise IRNError(f"{ckpt}: checkpoint of a {stored['model']} model, but this is {self.name}"
                           f" (pass the {stored['model']} config or another checkpoint)")
        net = self.build_net(stored)
        if expect_scale is not None and int(expect_scale) != net.scale:
            raise IRNError(f'{ckpt}: checkpoint is an x{net.scale} {self.name} '
                           f'({describe_arch(net.arch())}), but x{expect_scale} was asked for '
                           f"(--scale {expect_scale} or the config's scale)")
        check_arch(stored, net, ckpt)
        load_into(net, weights, ckpt)
        net.set_train(False)
        return net

    def save_net(self, path, net=None):
        """Write the weights of ``net`` (default: the trained one) with its architecture record."""
        net = net or self.net
        save_weights({p.name: p.asnumpy() for p in net.get_parameters()}, path, self.arch(net))

    # ------------------------------------------------------------------ training
    def setup_training(self, make_reducer=None):
        """Build the networks, optimizers and train step(s); ``make_reducer(params)`` returns
        the gradient all-reduce of a data-parallel run (None: single process)."""
        raise NotImplementedError

    def lr_options(self):
        """The ``train`` options whose schedule (:func:`src.schedule.build_lr`) gives the ``lr``
        of :meth:`train_step` (default: the config's, base rate ``lr_G``)."""
        return self.opt['train']

    def load_pretrained(self):
        """Initialise the networks of a fresh run from the config's pretrained weights
        (default: ``path.pretrain_model_G`` into the main network); returns the files read."""
        path = self.opt['path']['pretrain_model_G']
        if not path:
            return []
        load_weights(self.net, path)  # checks the architecture
        return [path]

    def state_cells(self):
        """``{group: Cell}`` whose parameters are the resumable state: networks first (the main
        one as ``net``), then optimizers."""
        raise NotImplementedError

    def train_step(self, batch, lr, rng):
        """One iteration on ``batch`` (numpy arrays from the data pipeline) at learning rate
        ``lr`` (a float32 Tensor), drawing all noise from ``rng``.

        Returns:
            (dict, bool): the logged values (``loss``, :attr:`loss_names`, ``grad_norm``) and
            whether the update was applied (False: a non-finite loss or gradient skipped it).
        """
        raise NotImplementedError

    def draw_rows(self, rng, shape):
        """This rank's rows of one N(0, I) draw for the global batch.

        Every rank draws the whole batch from the same generator and keeps rows
        ``rank_id, rank_id + rank_size, ...`` (the rows its data shard holds), so R ranks
        compute what one process computes on the global batch.
        """
        batch = self.opt['datasets']['train']['batch_size']
        full = rng.standard_normal((batch, *shape), dtype=np.float32)
        return full[self.rank_id::self.rank_size]

    def example_batch(self, rng, batch, patch):
        """A random training batch with the data pipeline's shapes (for benchmarks)."""
        s = self.opt['scale']
        return (rng.random((batch, 3, patch, patch), dtype=np.float32),
                rng.random((batch, 3, patch // s, patch // s), dtype=np.float32))

    @staticmethod
    def tensors(*arrays):
        """numpy arrays -> float32 Tensors."""
        return tuple(ms.Tensor(np.ascontiguousarray(a), ms.float32) for a in arrays)

    # ------------------------------------------------------------------ evaluation
    metrics = ()          # per-image values val.py reports (CSV columns)
    report_columns = ()   # val.py's table columns: (metric key, heading, decimals)

    def eval_protocol(self, args):
        """The evaluation protocol (a json-able dict) from val.py's flags and the config."""
        raise NotImplementedError

    def protocol_text(self, protocol):
        """The protocol in one line, printed with every table."""
        raise NotImplementedError

    def evaluate_set(self, net, images, protocol, keep_images=False):
        """Per-image metric dicts for ``images`` (``(name, hr)`` items); with ``keep_images``
        each also holds ``images``: {kind: uint8 image} to write as ``<set>/<kind>/<name>.png``."""
        raise NotImplementedError

    def summary_table(self, sets, protocol):
        """val.py's closing table of the per-set means (a model may lay it out its own way)."""
        from src.report import set_table
        return set_table(sets, self.report_columns)

    def summarize(self, results):
        """Means of :attr:`metrics` over a set (non-finite values, e.g. inf PSNR, skipped)."""
        return mean_metrics(results, self.metrics)

    # ------------------------------------------------------------------ deployment
    infer_modes = ()      # infer.py's modes for this model
    fractional_scales = False  # infer.py --scale 2.5: resize around the integer scale

    @staticmethod
    def export_cells(net, height=None, width=None):
        """export.py's graphs: ``[(suffix, cell, inputs, input_names)]`` (see src/exporting.py);
        ``height`` / ``width``: the HR size of static graphs (None: dynamic)."""
        raise NotImplementedError

    def runner(self, args, net):
        """The object infer.py calls as ``runner.run(mode, path, n)`` (and ``describe()``)."""
        raise NotImplementedError

    def validate_images(self, source):
        """Per-image metric dicts (at least the :attr:`metrics` keys) of the trained network
        on ``source`` (``(name, hr)`` items; a :class:`src.distributed.ShardedSource` has
        ``indices``, the images' positions in the whole set, for per-image randomness).

        A model that has it gets :meth:`validate` for free, and its validation is sharded
        over data-parallel ranks (each evaluates every R-th image, the values are gathered
        and summarised on every rank); without it, rank 0 validates alone.
        """
        raise NotImplementedError

    def shards_validation(self):
        """Whether data-parallel validation can be sharded (the model has ``validate_images``)."""
        return type(self).validate_images is not Model.validate_images

    def validate(self, source):
        """Metrics of the trained network on ``source`` (``(name, hr)`` items): a dict with
        :attr:`val_fields`. Default: :meth:`summarize` of :meth:`validate_images`."""
        return self.summarize(self.validate_images(source))

    def validation_text(self, metrics, num_images):
        """One log line (after 'val iter N') describing ``metrics`` and how they were made."""
        return f'{num_images} images: ' + ', '.join(f'{k} {metrics[k]:.4f}' for k in self.val_fields)
