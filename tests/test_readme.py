"""The README's usage snippet runs as written."""

import re
from pathlib import Path


def test_readme_usage_snippet_runs():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = re.search(r"## Use\n\n```python\n(.*?)```", readme, re.S).group(1)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    out = namespace["out"]
    assert out.autoregressive_frame_losses.shape == (1, 3)
    assert out.loss == out.main_loss + out.autoregressive_loss
