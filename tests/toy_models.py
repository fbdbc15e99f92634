"""Tiny models for fast tests (32×32 inputs, a few layers). Each factory returns an nn.Module."""

import torch
from torch import nn


class TinyCNN(nn.Module):
    """conv-bn-relu6(in place) → conv-bn-relu → residual add → pool → linear."""

    example_input_shape = (3, 32, 32)

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6(inplace=True))
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.block(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def tiny_cnn():
    torch.manual_seed(0)
    return TinyCNN()


class Relu6CNN(nn.Module):
    """conv → ReLU6(in place), the pattern whose raw shadow comparison reads a few dB on a clean model."""

    example_input_shape = (3, 32, 32)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3)
        self.act1 = nn.ReLU6(inplace=True)
        self.conv2 = nn.Conv2d(16, 16, 3)
        self.act2 = nn.ReLU6(inplace=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def relu6_cnn():
    torch.manual_seed(0)
    return Relu6CNN()


def bad_channel_cnn():
    """TinyCNN whose stem conv has one output channel's weights scaled 200× (its ReLU6 keeps the activations bounded)."""
    model = tiny_cnn()
    with torch.no_grad():
        model.stem[0].weight[3] *= 200.0
    return model


def not_a_module():
    return 42


def raising_factory():
    raise RuntimeError("the factory is broken")


class Untraceable(nn.Module):
    """Python control flow on a tensor value inside a submodule: torch.fx cannot trace it."""

    example_input_shape = (3, 32, 32)

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.gate = Gate()
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.gate(self.stem(x)).mean((2, 3)))


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


def untraceable():
    return Untraceable()


def nan_weights():
    model = tiny_cnn()
    with torch.no_grad():
        model.fc.weight[0, 0] = float("nan")
    return model


class BadNames(nn.Module):
    """A module name with double quotes: torch.fx cannot generate code for it."""

    example_input_shape = (3, 32, 32)

    def __init__(self):
        super().__init__()
        self.add_module('say "hi"', nn.Conv2d(3, 8, 3))

    def forward(self, x):
        return getattr(self, 'say "hi"')(x)


def bad_names():
    return BadNames()


# A class name is user data that reaches the report (coverage's op type) untouched.
HostileConv = type("<script>alert('x')</script><img src=x onerror=alert(1)>", (nn.Conv2d,), {})


class HostileClass(nn.Module):
    """Markup in a module name and in a class name."""

    example_input_shape = (3, 32, 32)

    def __init__(self):
        super().__init__()
        self.add_module("<script>alert('x')</script>", nn.Conv2d(3, 8, 3))
        self.conv = HostileConv(8, 8, 3)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = getattr(self, "<script>alert('x')</script>")(x)
        return self.fc(self.conv(x).mean((2, 3)))


def hostile_class():
    torch.manual_seed(0)
    return HostileClass()


class OutlierChannel(nn.Module):
    """One of 64 channels entering ``conv2`` is 50× larger than the others."""

    example_input_shape = (3, 32, 32)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1)
        gain = torch.ones(1, 64, 1, 1)
        gain[0, 5] = 50.0
        self.register_buffer("gain", gain)
        self.conv2 = nn.Conv2d(64, 8, 3)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.conv1(x) * self.gain
        return self.fc(self.conv2(x).mean((2, 3)))


def outlier_channel():
    torch.manual_seed(0)
    return OutlierChannel()


class NormMLP(nn.Module):
    """Linear → LayerNorm → Hardswish(in place) → Linear: int8 modules the Numeric Suite mistypes as float-input."""

    example_input_shape = (16,)

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.norm = nn.LayerNorm(32)
        self.act = nn.Hardswish(inplace=True)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(self.act(self.norm(self.fc1(x))))


def norm_mlp():
    torch.manual_seed(0)
    return NormMLP()


class PointwiseMean(nn.Module):
    """1×1 conv on a 1×1 input, then a spatial mean: torch's x86 int8 kernels cannot run it."""

    example_input_shape = (3, 1, 1)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean([2, 3]))


def pointwise_mean():
    torch.manual_seed(0)
    return PointwiseMean()



class PReLUCNN(nn.Module):
    """conv → PReLU → conv → PReLU → pool → linear: torch's int8 PReLU is wrong on the x86 backend."""

    example_input_shape = (3, 32, 32)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.prelu1 = nn.PReLU(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.prelu2 = nn.PReLU(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.prelu2(self.conv2(self.prelu1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


def prelu_cnn():
    torch.manual_seed(0)
    model = PReLUCNN()
    with torch.no_grad():  # trained PReLUs have small positive slopes, not the 0.25 of a fresh one
        model.prelu1.weight.uniform_(0.05, 0.3)
        model.prelu2.weight.uniform_(0.05, 0.3)
    return model


class EmbeddingClassifier(nn.Module):
    """Token ids → embedding → mean over the sequence → two Linears: the text-model shape dynamic quantization suits."""

    example_input_shape = (12,)

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.hidden = nn.Linear(16, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, tokens):
        return self.head(torch.relu(self.hidden(self.embed(tokens).mean(1))))


def embedding_classifier():
    torch.manual_seed(0)
    return EmbeddingClassifier()


class TwoInputNet(nn.Module):
    """An image and a feature vector: conv features of the image joined with the vector, then a linear head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.features = nn.Linear(4, 8)
        self.head = nn.Linear(16, 5)

    def forward(self, image, vector):
        x = torch.flatten(self.pool(torch.relu(self.conv(image))), 1)
        return self.head(torch.cat([x, torch.relu(self.features(vector))], dim=1))


def two_input_net():
    torch.manual_seed(0)
    return TwoInputNet()


class SharedReluNet(nn.Module):
    """A stem and torchvision's BasicBlock, which calls one ``self.relu`` after its first conv and after its add."""

    example_input_shape = (3, 32, 32)

    def __init__(self):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = BasicBlock(8, 8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.block(self.stem(x)).mean((2, 3)))


def shared_relu_net():
    torch.manual_seed(0)
    return SharedReluNet().eval()


def conv_only():
    """Two convolutions and a global mean: no Linear layer."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 10, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model.example_input_shape = (3, 32, 32)
    return model.eval()


class DenseBlockNet(nn.Module):
    """DenseNet's pattern: a BatchNorm after a concatenation, not after a conv (nothing to fold it into)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(11)
        self.conv = nn.Conv2d(11, 10, 3)

    def forward(self, x):
        return self.conv(torch.relu(self.norm(torch.cat([self.stem(x), x], 1)))).mean((2, 3))


def dense_block_net():
    torch.manual_seed(0)
    model = DenseBlockNet()
    with torch.no_grad():  # trained-looking statistics, so the BatchNorm is not the identity
        model.norm.running_mean.uniform_(-0.5, 0.5)
        model.norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


def flatten_cnn():
    """A conv whose output is flattened into a Linear classifier (VGG's and AlexNet's head)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    model.example_input_shape = (3, 8, 8)
    return model.eval()


class PermutedSumNet(nn.Module):
    """A conv whose output is added to a transposed tensor (MaxViT's pattern: the fused add's other input is not
    channels-last)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = torch.relu(self.stem(x))
        return self.fc((self.conv(y) + y.transpose(2, 3)).mean((2, 3)))


def permuted_sum_net():
    torch.manual_seed(0)
    model = PermutedSumNet()
    model.example_input_shape = (3, 8, 8)
    return model.eval()
