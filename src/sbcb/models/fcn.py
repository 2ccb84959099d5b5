"""FCN (Long et al., CVPR 2015) as in mmseg's ``fcn_r101-d8`` and ``fcn_hr48`` recipes (paper Tab. 12 and Tab. 1c).

On a dilated ResNet: two 3x3 convs to 512 channels on layer4, concatenated with the input, a third 3x3 conv,
dropout 0.1 and a 1x1 classifier. On HRNet: the four branches resized to 1/4 and concatenated, one 1x1 conv to the
same width (W48: 720), no dropout.
"""

from __future__ import annotations

from sbcb.models.encoder_decoder import EncoderDecoder, FCNHead, build_encoder, decode_inputs, segmentor
from sbcb.models.registry import register_model


@register_model("fcn")
def fcn(
    *,
    num_classes: int,
    encoder: str | None = None,
    output_stride: int | None = None,
    channels: int | None = None,
    dropout: float | None = None,
    aux_head: bool = False,
) -> EncoderDecoder:
    """FCN on a timm encoder (default: ResNet-101 d8, paper Tab. 12).

    Args:
        num_classes: K.
        encoder: timm model name (None = ``resnet101``; ``hrnet_w48`` gives the paper's Tab. 1c "HR48 FCN").
        output_stride: Encoder output stride (None = 8, the paper's d8; HRNet: its own).
        channels: Head width (None = 512; HRNet: the concatenated branch width, as mmseg).
        dropout: Dropout before the classifier (None = 0.1; HRNet: none, as mmseg).
        aux_head: Add mmseg's FCN auxiliary head on the penultimate level.
    """
    enc = build_encoder(encoder or "resnet101", output_stride)
    inputs = decode_inputs(enc)
    if inputs.concat:  # mmseg fcn_hr*: 1x1 conv, width = concatenated branches, no concat, no dropout
        head = FCNHead(
            inputs.channels[0],
            num_classes,
            channels=channels or inputs.channels[0],
            num_convs=1,
            kernel_size=1,
            dropout=0.0 if dropout is None else dropout,
        )
    else:
        head = FCNHead(
            inputs.channels[0],
            num_classes,
            channels=channels or 512,
            num_convs=2,
            concat_input=True,
            dropout=0.1 if dropout is None else dropout,
        )
    return segmentor(enc, head, inputs, num_classes=num_classes, aux_head=aux_head)
