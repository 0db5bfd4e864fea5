"""Lecture controls: the values a lecturer changes live are Colab form fields (`#@param`).

On Colab a `name = value  #@param ...` line becomes a form field; in Jupyter and under nbval it is
an ordinary assignment. These tests read every lesson's form lines: each must be plain Python, a
valid Colab annotation, and default to the profile's value (no size the profile owns, nor a layer
name of one profile's model, is typed into a form). Executing them is nbval's job (`make test`)
and the Colab check's (`make colab-check`); a changed, invalid value must get the course's errors.
"""
import ast
import dataclasses
import re
from pathlib import Path

import keras
import nbformat
import numpy as np
import pytest

from coursekit import env, features, models

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
WITH_SOLUTIONS = LESSONS + sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))  # forms there are checked too
LESSONS_WITH_FORMS = range(1, 11)  # lessons 01-10 must each have at least one form field
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


@pytest.mark.parametrize("path", [p for p in LESSONS if int(p.name[:2]) in LESSONS_WITH_FORMS], ids=lambda p: p.name)
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
