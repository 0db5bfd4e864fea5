"""seaborn draws lessons 05's and 06's tables and scatter plots. Colab ships it (0.13.2), so the
notebooks' setup cell must not install it; a local machine gets it from requirements.txt."""
import re
import tomllib
from pathlib import Path

import nbformat

from coursekit.tools import course

ROOT = Path(__file__).resolve().parents[1]


def test_seaborn_is_a_local_requirement_but_not_installed_on_colab():
    requirements = (ROOT / "requirements.txt").read_text().splitlines()
    assert any(re.match(r"seaborn\s*>=", line) for line in requirements)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # the setup cell pip-installs coursekit, which pulls in exactly these dependencies
    assert not any(dependency.startswith("seaborn") for dependency in project["dependencies"])
    assert any(dependency.startswith("seaborn") for dependency in project["optional-dependencies"]["local"])
    for folder in course.NOTEBOOK_FOLDERS:
        for path in sorted((ROOT / folder).glob("*.ipynb")):
            for cell in course.tagged_cells(nbformat.read(path, as_version=4), course.SETUP_TAG):
                assert "seaborn" not in cell.source, path


def test_lessons_05_and_06_draw_with_seaborn():
    for name in ("05_shortcut_learning", "06_units_and_occlusion"):
        notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
        code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
        assert "import seaborn as sns" in code and "sns.heatmap(" in code, name
