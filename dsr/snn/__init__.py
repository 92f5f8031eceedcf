"""The paper's maths: DSR neurons and their backward (`neuron`), time-first layers and the fast
and approx modes (`layers`), the phase protocol those modes run (`phase`) and the architectures
(`models`). Nothing here knows about data, runs or files."""
