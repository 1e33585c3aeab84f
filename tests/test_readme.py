"""The README's example runs as written."""

import math
import re
from pathlib import Path


def test_readme_python_example_runs(capsys):
    text = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(block.replace("members=5, epochs=600", "members=2, epochs=50"), "README.md", "exec"), namespace)
    p = namespace["p"]
    assert p.mean.shape == p.std.shape == (200,)
    lower, upper = namespace["lower"], namespace["upper"]
    assert (lower <= upper).all()
    printed_nll = float(capsys.readouterr().out.strip().splitlines()[-1])
    assert math.isfinite(printed_nll)
