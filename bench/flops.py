"""Floating-point operations of the VAE, counted from its layers' shapes.

Convention (the usual one for convolutional networks):

- A multiply-add (MAC) of one weight with one activation is 2 FLOPs. Only Conv2D, Conv2DTranspose and
  Dense layers are counted. Biases, activations, sampling, the loss and the optimizer update are
  elementwise, O(activations) rather than O(activations x kernel): under 1% of this model's work, left out.
- A transposed convolution counts its useful products, ``in_h * in_w * in_c * k_h * k_w * out_c`` (each
  input pixel scatters one kernel-sized patch), not the zeros an implementation that dilates its input
  multiplies as well.
- A training step costs 3 forward passes: the backward pass computes the gradient with respect to each
  layer's input and with respect to its weights, each as many MACs as the forward pass. (The first layer's
  input gradient is never needed; counting it anyway adds 0.5% for the chapter's model.)

For the chapter's MNIST model this gives 14,921,088 MACs forward (the issue's "about 15 M"),
29.8 MFLOP forward and 89.5 MFLOP per training image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FLOPS_PER_MAC = 2
TRAINING_PASSES = 3  # forward + gradient w.r.t. inputs + gradient w.r.t. weights
CONVENTION = (
    "2 FLOPs per multiply-add of Conv2D, Conv2DTranspose and Dense layers (transposed convolutions: useful "
    "products only); elementwise work left out; a training step = 3 forward passes"
)


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str  # "Conv2D", "Conv2DTranspose" or "Dense"
    multiply_adds: int  # per image, forward


def conv2d_macs(out_hw: tuple[int, int], in_channels: int, out_channels: int, kernel: tuple[int, int]) -> int:
    """Every output value is a dot product over a ``kernel`` window of all input channels."""
    return math.prod(out_hw) * out_channels * math.prod(kernel) * in_channels


def conv2d_transpose_macs(in_hw: tuple[int, int], in_channels: int, out_channels: int, kernel: tuple[int, int]) -> int:
    """Every input value is multiplied into a ``kernel``-sized patch of every output channel."""
    return math.prod(in_hw) * in_channels * math.prod(kernel) * out_channels


def dense_macs(in_features: int, units: int, positions: int = 1) -> int:
    """``positions`` > 1 when a Dense layer is applied along the last axis of a higher-rank input."""
    return positions * in_features * units


def layer_costs(*models) -> list[LayerCost]:
    """Forward MACs per image of each counted layer of the given (functional, built) Keras models, in order.

    Nested models are walked; layers without a kernel (activations, reshapes, batch norm) cost nothing here.
    A layer with a kernel of a kind this module does not know raises ValueError rather than being skipped.
    """
    import keras

    costs: list[LayerCost] = []
    for model in models:
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                costs.extend(layer_costs(layer))
            elif getattr(layer, "kernel", None) is not None:
                costs.append(LayerCost(layer.name, type(layer).__name__, _kernel_layer_macs(layer)))
    return costs


def forward_macs(costs: list[LayerCost]) -> int:
    return sum(cost.multiply_adds for cost in costs)


def training_flops_per_image(forward_multiply_adds: int) -> int:
    return TRAINING_PASSES * FLOPS_PER_MAC * forward_multiply_adds


def _kernel_layer_macs(layer) -> int:
    import keras

    kernel = tuple(int(n) for n in layer.kernel.shape)
    in_shape = tuple(layer.input.shape[1:])  # without the batch axis
    out_shape = tuple(layer.output.shape[1:])
    if isinstance(layer, keras.layers.Conv2DTranspose):
        _require_channels_last(layer)
        # Keras stores a transposed kernel as (k_h, k_w, out_channels, in_channels).
        return conv2d_transpose_macs((in_shape[0], in_shape[1]), kernel[3], kernel[2], (kernel[0], kernel[1]))
    if isinstance(layer, keras.layers.Conv2D):
        _require_channels_last(layer)
        groups = getattr(layer, "groups", 1)
        if groups != 1:
            raise ValueError(f"layer {layer.name!r}: grouped convolutions (groups={groups}) are not counted")
        return conv2d_macs((out_shape[0], out_shape[1]), kernel[2], kernel[3], (kernel[0], kernel[1]))
    if isinstance(layer, keras.layers.Dense):
        return dense_macs(kernel[0], kernel[1], math.prod(in_shape[:-1]))
    raise ValueError(f"layer {layer.name!r} of type {type(layer).__name__} has a kernel but no FLOP rule; add one")


def _require_channels_last(layer) -> None:
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise ValueError(f"layer {layer.name!r}: only channels_last convolutions are counted; received {layer.data_format}")
