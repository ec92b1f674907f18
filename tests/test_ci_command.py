"""`.ci/run` runs exactly the README's install-and-test command (which ends with the wheel check)."""
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci_command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    section = readme.split("This is what\n`.ci/run` runs:", 1)[1]
    readme_command = section.split("```bash\n", 1)[1].split("\n```", 1)[0]
    assert ci_command == readme_command
    assert readme_command.endswith("python -m pytest -q && .ci/wheel-check")
