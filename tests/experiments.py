"""The small digits experiment that the grid and workflow tests vary (not a test module)."""


def experiment(**changes) -> dict:
    """One config experiment: DSR-IF and DSR-LIF, T = 2 and 4, two seeds, 5 epochs; `changes`
    replace its keys (firing_rates defaults to its DSR methods)."""
    exp = {"name": "digits", "title": "Test grid", "dataset": "digits",
           "archs": ["preact_resnet8"], "methods": ["dsr-if", "dsr-lif"], "time_steps": [2, 4],
           "seeds": [0, 1], "epochs": 5}
    exp.update(changes)
    exp.setdefault("firing_rates", [m for m in exp["methods"] if m.startswith("dsr-")])
    return exp
