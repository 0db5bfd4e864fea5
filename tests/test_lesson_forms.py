"""Lesson 02's Colab form fields: ``name = value  #@param {type:"..."}`` lines. Colab shows each as
a form field; everywhere else the line is a plain assignment whose default is the profile's value."""
import ast
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
FORM_LINE = re.compile(r'^(?P<name>[a-z_][a-z0-9_]*) = (?P<value>.+?)  '
                       r'#@param \{type:"(?P<type>integer|number|string|raw|boolean)"\}$')


def form_fields(notebook_path):
    notebook = nbformat.read(notebook_path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            for line in cell.source.splitlines():
                if "#@param" in line:
                    yield line


def test_lesson_02_form_fields_are_well_formed_assignments():
    lines = list(form_fields(ROOT / "notebooks" / "02_filter_patterns.ipynb"))
    assert len(lines) >= 8, lines
    names = []
    for line in lines:
        match = FORM_LINE.match(line)
        assert match, f"not a Colab form line: {line!r}"
        ast.parse(line)  # plain Python outside Colab
        value, kind = match["value"], match["type"]
        if kind in ("integer", "number"):
            assert isinstance(ast.literal_eval(value), (int, float)), line
        names.append(match["name"])
    assert len(names) == len(set(names)), names
    # the sizes a profile owns are read from it, never typed in
    for owned in ("ascent_steps", "n_filters", "fourier_steps", "dream_octaves", "dream_steps"):
        assert any(line.startswith(f"{owned} = profile.{owned}") for line in lines), owned
