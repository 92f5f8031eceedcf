"""Display names: what people read for a key. A method's name is its spec's (dsr.spec: a
built-in's in dsr.registry.METHODS, a plug-in's from its class, carried in each experiment's
`specs` and registered here by `use_specs`); architectures and datasets are mapped below."""

from dsr import registry

_PLUGIN_SPECS: dict[str, dict] = {}  # key -> MethodSpec.to_dict() of the configuration's methods

DISPLAY = {
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


def use_specs(experiments: list[dict]) -> None:
    """Register the methods' specs of a configuration (Grid.experiments' `specs`), so that a
    plug-in's declared name is what tables, figures and claims show."""
    for exp in experiments:
        _PLUGIN_SPECS.update(exp.get("specs") or {})


def method_name(method: str) -> str | None:
    spec = _PLUGIN_SPECS.get(method)
    if spec is not None:
        return spec["name"]
    return registry.METHODS[method].name if method in registry.METHODS else None


def display(key: str) -> str:
    """What people read for a key; a swept run's key is method@param=value."""
    method, _, variant = key.partition("@")
    name = method_name(method) or DISPLAY.get(method, method)
    return f"{name}, {variant.replace('=', ' = ')}" if variant else name


def row_key(method: str, variant: str | None) -> str:
    """The table-row and figure key of a run: the method, or method@param=value if swept."""
    return f"{method}@{variant}" if variant else method

