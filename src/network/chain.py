"""The shape every invertible network of the family shares: a chain of invertible ops."""
from mindspore import nn, ops


class InvertibleChain(nn.Cell):
    """``self.operations`` (an ``nn.CellList`` set by the subclass) applied in order.

    The output's first ``lr_channels`` channels are the image part (the LR of IRN, the grey
    image of IRN-Color); the rest is z. Subclasses set ``operations``, ``channel_in`` (image
    channels), ``lr_channels`` and ``channel_out``.
    """

    def construct(self, x):
        for op in self.operations:
            x = op(x)
        return x

    def forward(self, x):
        """Image -> (image part unquantised, z)."""
        out = self.construct(x)
        return out[:, :self.lr_channels], out[:, self.lr_channels:]

    def inverse(self, y):
        """A full output-shaped tensor -> the image."""
        for i in range(len(self.operations) - 1, -1, -1):  # slicing a CellList renames params
            y = self.operations[i].inverse(y)
        return y

    def upscale(self, lr, z):
        """(image part, z) -> image: IRN's upscaling, IRN-Color's colourisation. The image
        part is usually quantised; z is drawn from N(0, I) or zero (IRN-Color: always zero)."""
        return self.inverse(ops.cat((lr, z), 1))

    def freeze_inverses(self):
        """For export, before the inverse is compiled: ops that invert a learnable matrix
        (Conv1x1Grey, ConvDownsampling) take its inverse once, as a constant. Not for training."""
        for op in self.operations:
            if hasattr(op, 'freeze_inverse'):
                op.freeze_inverse()
