"""Display names: the one map from keys (methods, architectures, datasets) to what people read."""

DISPLAY = {
    "dsr-if": "DSR (IF)",
    "dsr-lif": "DSR (LIF)",
    "ann": "ANN (ReLU)",
    "sg-bptt": "Surrogate gradient (BPTT)",
    "tet": "TET",
    "plif": "PLIF",
    "dspike": "Dspike",
    "ottt": "OTTT",
    "sltt": "SLTT",
    "conversion": "ANN-to-SNN conversion",
    "qcfs": "QCFS",
    "preact_resnet8": "PreAct-ResNet-8",
    "preact_resnet18": "PreAct-ResNet-18",
    "preact_resnet20": "PreAct-ResNet-20",
    "preact_resnet32": "PreAct-ResNet-32",
    "preact_resnet44": "PreAct-ResNet-44",
    "preact_resnet56": "PreAct-ResNet-56",
    "preact_resnet110": "PreAct-ResNet-110",
    "vgg11": "VGG-11",
    "digits": "digits (scikit-learn)",
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "imagenet": "ImageNet",
    "cifar10_dvs": "DVS-CIFAR10",
}
DASH = "–"  # an empty cell: not run, not recorded or not published


def display(key: str) -> str:
    """What people read for a key; a swept run's key is method@param=value."""
    method, _, variant = key.partition("@")
    name = DISPLAY.get(method, method)
    return f"{name}, {variant.replace('=', ' = ')}" if variant else name


def row_key(method: str, variant: str | None) -> str:
    """The table-row and figure key of a run: the method, or method@param=value if swept."""
    return f"{method}@{variant}" if variant else method

