"""Lecture controls: the values a lecturer changes live are Colab form fields (`#@param`).

On Colab a `name = value  #@param ...` line becomes a form field; in Jupyter and under nbval it is
an ordinary assignment. These tests read every lesson's form lines: each must be plain Python, a
valid Colab annotation, and default to the profile's value (no size the profile owns, nor a layer
name of one profile's model, is typed into a form). Executing them is nbval's job (`make test`)
and the Colab check's (`make colab-check`); a changed, invalid value must get the course's errors.
Every option of a dropdown (`#@param ["a", "b"]`) is executed here: the lesson runs with that option
up to the last cell that depends on it.
"""
import ast
import dataclasses
import re
from pathlib import Path

import keras
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

from coursekit import env, features, models
from coursekit.tools.course import lesson_notebooks
from coursekit.tools.gallery import error_message, kernel_environment

ROOT = Path(__file__).resolve().parents[1]
LESSONS = lesson_notebooks(ROOT / "notebooks")   # every lesson must have at least one form field
WITH_SOLUTIONS = LESSONS + lesson_notebooks(ROOT / "solutions")  # forms there are checked too
FORM = re.compile(r"^(?P<assign>[A-Za-z_]\w*\s*=\s*.+?)\s*#\s*@param\s*(?P<annotation>.*)$")
COLAB_TYPES = {"string", "number", "integer", "boolean", "slider", "date", "raw"}
# An int form variable whose name has one of these words holds a size: its default must come from the profile.
SIZE_WORDS = {"epochs", "steps", "samples", "filters", "size", "units", "points", "images", "batch"}
PROFILE_FIELDS = {field.name for field in dataclasses.fields(env.Profile)}
PRETRAINED_FIELDS = {field.name for field in dataclasses.fields(models.Pretrained)}
# Layer names that belong to one profile's ImageNet model (typed into a form, they break the others).
MODEL_LAYERS = {name for spec in models.SPECS.values()
                for name in (spec.last_conv_layer, *spec.feature_layers, *spec.pattern_layers)}


@dataclasses.dataclass
class Form:
    notebook: str
    line: str
    name: str
    value: ast.expr
    annotation: str


def forms_of(path: Path) -> list[Form]:
    found = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            match = FORM.match(line.strip())
            if match:
                tree = ast.parse(match["assign"])  # plain Python, or this raises
                assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Assign), line
                target = tree.body[0].targets[0]
                assert isinstance(target, ast.Name), f"{path.name}: a form field assigns one name: {line!r}"
                found.append(Form(path.name, line.strip(), target.id, tree.body[0].value, match["annotation"].strip()))
    return found


def literal(node: ast.expr):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None  # an expression (profile.x, net.feature_layers, ...): Colab's "raw" field


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_has_form_fields(path):
    assert forms_of(path), (f"{path.name} has no Colab form field: make the values a lecturer changes live "
                            "(layer, channel, class, photo, steps) `name = default  #@param ...` lines.")


@pytest.mark.parametrize("path", WITH_SOLUTIONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_form_fields_are_valid_colab_and_plain_python(path):
    for form in forms_of(path):
        annotation = form.annotation
        choices = None
        if annotation.startswith("["):
            end = annotation.index("]") + 1
            choices = ast.literal_eval(annotation[:end])
            assert isinstance(choices, list) and choices, form.line
            annotation = annotation[end:].strip()
        if annotation:
            options = re.fullmatch(r"\{\s*(?P<body>.*)\}", annotation)
            assert options, f"{form.notebook}: the annotation must be [choices] and/or {{...}}: {form.line!r}"
            kind = re.search(r'type\s*:\s*"(\w+)"', options["body"])
            assert kind or choices is not None, f"{form.notebook}: no type: {form.line!r}"
            kind = kind[1] if kind else None
            assert kind is None or kind in COLAB_TYPES, f"{form.notebook}: Colab has no type {kind!r}: {form.line!r}"
        else:
            kind = None
            assert choices is not None, f"{form.notebook}: `#@param` needs [choices] or {{type: ...}}: {form.line!r}"
        default = literal(form.value)
        if kind != "raw":  # Colab writes other fields back as literals, so the default must be one
            assert default is not None, f"{form.notebook}: only a raw field may default to an expression: {form.line!r}"
        if choices is not None:
            assert default in choices, f"{form.notebook}: the default is not among the choices: {form.line!r}"
        if kind == "boolean":
            assert isinstance(default, bool), form.line
        if kind == "integer":
            assert isinstance(default, int) and not isinstance(default, bool), form.line


@pytest.mark.parametrize("path", WITH_SOLUTIONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_size_the_profile_owns_is_typed_into_a_form(path):
    for form in forms_of(path):
        default = literal(form.value)
        words = set(form.name.lower().split("_"))
        if form.name in PROFILE_FIELDS or (isinstance(default, int) and not isinstance(default, bool)):
            # a count or a size in pixels (an int; a float such as a step length is a rate, not a size)
            assert default is None or not (words & SIZE_WORDS or form.name in PROFILE_FIELDS), (
                f"{form.notebook}: {form.line!r} types in a size the profile owns; default to profile.<field> "
                "with {type:\"raw\"} instead.")
        for node in ast.walk(form.value):  # a default read from the profile or the model names a real field
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                owner = {"profile": PROFILE_FIELDS, "net": PRETRAINED_FIELDS}.get(node.value.id)
                assert owner is None or node.attr in owner, f"{form.notebook}: no field {node.attr!r}: {form.line!r}"
        if isinstance(default, str):
            assert default not in MODEL_LAYERS, (
                f"{form.notebook}: {form.line!r} names a layer of one profile's model; default to "
                "net.feature_layers[...], net.last_conv_layer (a raw field) instead.")


def test_the_checks_catch_a_hard_coded_size(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'ascent_steps = 8  #@param {type:"integer"}\nlayer = "conv_pw_5"  #@param {type:"string"}')])
    nbformat.write(notebook, tmp_path / "09_x.ipynb")
    with pytest.raises(AssertionError, match="size the profile owns"):
        test_no_size_the_profile_owns_is_typed_into_a_form(tmp_path / "09_x.ipynb")
    notebook.cells[0].source = 'layer = "conv_pw_5"  #@param {type:"string"}'
    nbformat.write(notebook, tmp_path / "09_x.ipynb")
    with pytest.raises(AssertionError, match="layer of one profile's model"):
        test_no_size_the_profile_owns_is_typed_into_a_form(tmp_path / "09_x.ipynb")
    notebook.cells[0].source = 'steps = profile.ascent_step  #@param {type:"raw"}'
    nbformat.write(notebook, tmp_path / "09_x.ipynb")
    with pytest.raises(AssertionError, match="no field 'ascent_step'"):
        test_no_size_the_profile_owns_is_typed_into_a_form(tmp_path / "09_x.ipynb")
    notebook.cells[0].source = 'layer = net.last_conv_layer  #@param {type:"string"}'
    nbformat.write(notebook, tmp_path / "09_x.ipynb")
    with pytest.raises(AssertionError, match="only a raw field"):
        test_form_fields_are_valid_colab_and_plain_python(tmp_path / "09_x.ipynb")


# ----------------------------------------------------------------------------- every dropdown option runs

def choices_of(form: Form) -> list | None:
    annotation = form.annotation
    return ast.literal_eval(annotation[:annotation.index("]") + 1]) if annotation.startswith("[") else None


def dropdown_options() -> list[tuple[Path, Form, object]]:
    """(lesson, form, option) for every option of every dropdown that is not the form's default."""
    return [(path, form, option) for path in LESSONS for form in forms_of(path)
            if choices_of(form) for option in choices_of(form) if option != literal(form.value)]


def names_in(source: str) -> tuple[set[str], set[str]]:
    """(names a cell reads, names it binds); IPython's % and ! lines read and bind nothing."""
    tree = ast.parse(re.sub(r"^(\s*)[%!].*$", r"\1pass", source, flags=re.M))
    read, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return read, bound


def forms_of_source(line: str) -> tuple[str, str]:
    """(the value's source, the annotation) of one form line."""
    match = FORM.match(line)
    return ast.unparse(ast.parse(match["assign"]).body[0].value), match["annotation"]


def with_option(path: Path, form: Form, option) -> nbformat.NotebookNode:
    """The lesson with ``option`` typed into ``form``, cut after the last cell that depends on it.

    A cell depends on the form when it reads the form's name, or a name bound by a cell that does
    (a function whose default is the form's value, an array computed from it, ...).
    """
    notebook = nbformat.read(path, as_version=4)
    form_cell = next(i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code" and form.line in cell.source)
    cell = notebook.cells[form_cell]
    typed = re.sub(r"=\s*.+?(\s*#\s*@param)", lambda match: f"= {option!r}{match[1]}", form.line, count=1)
    assert typed != form.line and forms_of_source(typed)[0] == repr(option), (form.line, typed)
    cell.source = cell.source.replace(form.line, typed, 1)
    tainted, last = {form.name}, form_cell
    for index in range(form_cell + 1, len(notebook.cells)):
        if notebook.cells[index].cell_type == "code":
            read, bound = names_in(notebook.cells[index].source)
            if (read - bound) & tainted:   # a name the cell binds itself (fig, ax, i) carries nothing in
                tainted |= bound
                last = index
    notebook.cells = notebook.cells[:last + 1]
    return notebook


def dropdown_forms() -> list[tuple[Path, Form]]:
    """(lesson, form) for every dropdown with an option besides its default."""
    forms = []
    for path, form, _ in dropdown_options():
        if (path, form) not in forms:
            forms.append((path, form))
    return forms


def run_every_option(path: Path, form: Form, workdir: Path) -> list[str]:
    """Run the lesson up to ``form``'s cell once, then, in the same kernel, for each other option the
    form's cell and every cell after it up to the last one that depends on it; the failures.

    One kernel per form instead of one per option: the cells before the form (imports, models,
    data) run once, and each option runs exactly the cells that a student's change re-runs.
    """
    options = [option for option in choices_of(form) if option != literal(form.value)]
    source = nbformat.read(path, as_version=4)
    form_cell = next(i for i, cell in enumerate(source.cells) if cell.cell_type == "code" and form.line in cell.source)
    cut = {option: with_option(path, form, option) for option in options}
    first = cut[options[0]]
    workdir.mkdir(parents=True, exist_ok=True)
    client = NotebookClient(first, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
    failures = []
    with client.setup_kernel(env=kernel_environment()):
        for index in range(form_cell):
            client.execute_cell(first.cells[index], index)
        for option, notebook in cut.items():
            for index in range(form_cell, len(notebook.cells)):
                try:
                    client.execute_cell(notebook.cells[index], index)
                except (CellExecutionError, CellTimeoutError) as failure:
                    failures.append(f"{form.name} = {option!r}, cell {index}: {error_message(failure)[1][-1500:]}")
                    break
    return failures


@pytest.mark.parametrize("path, form", dropdown_forms(),
                         ids=lambda value: value.name if isinstance(value, (Path, Form)) else repr(value))
def test_every_dropdown_option_runs(path, form, tmp_path):
    failures = run_every_option(path, form, tmp_path / "run")
    assert not failures, f"{path.name} fails with:\n" + "\n".join(failures)


def test_the_cut_keeps_every_cell_that_depends_on_the_form(tmp_path):
    cells = ["import numpy as np", "layer = 'a'  #@param ['a', 'b']", "def use(x=layer):\n    return x",
             "other = 1", "value = use()", "print(other)", "print(value)", "print('after')"]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), tmp_path / "09_x.ipynb")
    form = forms_of(tmp_path / "09_x.ipynb")[0]
    cut = with_option(tmp_path / "09_x.ipynb", form, "b")
    assert [cell.source for cell in cut.cells] == ["import numpy as np", "layer = 'b'  #@param ['a', 'b']", *cells[2:7]]
    cells[1] = 'layer = "a"  #@param ["a", "b"]'      # Colab writes double quotes
    cells[6] = "fig, ax = 1, 2\nprint(value, ax)"
    cells[7] = "fig, ax = 3, 4\nprint(ax)"              # rebinding ax makes it no dependent
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), tmp_path / "09_x.ipynb")
    cut = with_option(tmp_path / "09_x.ipynb", forms_of(tmp_path / "09_x.ipynb")[0], "b")
    assert [cell.source for cell in cut.cells][1:] == ["layer = 'b'  #@param [\"a\", \"b\"]", *cells[2:7]]



def test_every_option_runs_in_one_kernel_and_a_failing_option_is_named(tmp_path):
    cells = ["runs = []", "mode = 'a'  #@param ['a', 'b', 'c']", "runs.append(mode)",
             "assert mode != 'b', 'b breaks the lesson'", "print(runs)", "print('not a dependent')"]
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), tmp_path / "09_x.ipynb")
    form = forms_of(tmp_path / "09_x.ipynb")[0]
    failures = run_every_option(tmp_path / "09_x.ipynb", form, tmp_path / "run")
    assert len(failures) == 1 and failures[0].startswith("mode = 'b', cell 3") and "b breaks the lesson" in failures[0]
    cells[3] = "assert runs == ['b'] or runs == ['b', 'c'], runs   # the cells before the form ran once"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), tmp_path / "09_x.ipynb")
    assert run_every_option(tmp_path / "09_x.ipynb", form, tmp_path / "run") == []

# ----------------------------------------------------------------------------- a changed, invalid value

@pytest.fixture(scope="module")
def small_cnn():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, keras.layers.Dense(5, activation="softmax", name="predictions")(x), name="small_cnn")


def test_a_layer_that_does_not_exist_is_named_with_close_matches(small_cnn):
    with pytest.raises(ValueError, match=r"no layer 'conv_b'.*conv_a"):
        features.feature_maps(small_cnn, np.zeros((1, 16, 16, 3), "float32"), layers=["conv_b"])
    with pytest.raises(ValueError, match=r"no layer 'conv_b'.*conv_a"):
        models.check_channel(small_cnn, "conv_b", 0)


def test_a_channel_beyond_the_layer_gives_its_range(small_cnn):
    assert models.check_channel(small_cnn, "conv_a", np.int64(7)) == 7
    with pytest.raises(ValueError, match=r"'conv_a' has 8 channels, numbered 0 to 7; got 8"):
        models.check_channel(small_cnn, "conv_a", 8)
    with pytest.raises(ValueError, match="'predictions' has 5 units, numbered 0 to 4; got -1"):
        models.check_channel(small_cnn, "predictions", -1)
    with pytest.raises(ValueError, match="whole number"):
        models.check_channel(small_cnn, "conv_a", "3")


def test_a_layer_without_a_map_is_refused_for_grad_cam(small_cnn):
    with pytest.raises(ValueError, match=r"'pool' outputs shape .* not \(N, H, W, C\).*'conv_a'"):
        models.require_spatial(small_cnn, "pool", "Grad-CAM")


def test_an_occlusion_patch_or_stride_that_cannot_work_is_refused():
    from coursekit import occlusion
    occlusion.check_patch(7, 2, 28, 28)  # lesson 06's defaults on digits
    with pytest.raises(ValueError, match=r"patch must be a whole number of pixels between 1 and 28.*got 40"):
        occlusion.check_patch(40, 2, 28, 28)
    with pytest.raises(ValueError, match="stride must be a whole number of pixels >= 1; got 0"):
        occlusion.check_patch(7, 0, 28, 28)
