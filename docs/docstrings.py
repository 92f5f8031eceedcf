"""Griffe extension for the API reference: a docstring keeps its line breaks.

The code's docstrings are written line by line (an equation per line, as in dsr/snn/neuron.py), and
Markdown would join those lines into one paragraph. Each line that another text line follows
gets a Markdown hard break, so the reference reads as the source does; indented blocks (code
examples) and fenced code are left as they are.
"""

import griffe


def keep_line_breaks(text: str) -> str:
    lines = text.splitlines()
    fenced = False
    out = []
    for line, after in zip(lines, [*lines[1:], ""], strict=True):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        text_line = line.strip() and not line.startswith("    ")
        if not fenced and text_line and after.strip() and not after.startswith("    "):
            line = line.rstrip() + "  "  # Markdown's hard line break
        out.append(line)
    return "\n".join(out)


class KeepLineBreaks(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = keep_line_breaks(obj.docstring.value)
