"""coursekit.cues: the 16-category mapping, shape bias, patch shuffling, loading and downloading the
stimuli (against a local HTTP server), and the smoke model's shape bias on the offline stimuli."""
from __future__ import annotations

import http.server
import math
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import unavailable
from coursekit import _stimuli_files, cues, downloads, env

# ----------------------------------------------------------------------------- the mapping

def hand_made_probabilities() -> np.ndarray:
    """One image's 1,000 probabilities where the mean, the sum and the maximum pick three different categories.

    airplane (1 class, 404): 0.1            -> mean 0.1      sum 0.1    max 0.1
    bird (49 classes): class 8 gets 0.3     -> mean 0.3/49   sum 0.3    max 0.3
    dog (109 classes): 0.004 each           -> mean 0.004    sum 0.436  max 0.004
    the rest, 0.164, on class 1 (a goldfish, in no category).
    """
    probabilities = np.zeros(1000)
    probabilities[404] = 0.1
    probabilities[8] = 0.3
    probabilities[list(cues.IMAGENET_INDICES["dog"])] = 0.004
    probabilities[1] = 1 - probabilities.sum()
    return probabilities


def test_the_mean_rule_against_a_hand_computed_example():
    scores = cues.category_scores(hand_made_probabilities())
    expected = np.zeros(16)
    expected[cues.CATEGORIES.index("airplane")] = 0.1
    expected[cues.CATEGORIES.index("bird")] = 0.3 / 49
    expected[cues.CATEGORIES.index("dog")] = 0.004
    np.testing.assert_allclose(scores, expected[None], atol=1e-12)
    assert cues.CATEGORIES[scores.argmax()] == "airplane"


def test_sum_and_max_would_decide_otherwise_on_the_same_example():
    probabilities = hand_made_probabilities()
    summed = [probabilities[list(cues.IMAGENET_INDICES[c])].sum() for c in cues.CATEGORIES]
    largest = [probabilities[list(cues.IMAGENET_INDICES[c])].max() for c in cues.CATEGORIES]
    assert cues.CATEGORIES[int(np.argmax(summed))] == "dog"
    assert cues.CATEGORIES[int(np.argmax(largest))] == "bird"


def test_the_table_has_sixteen_sorted_categories_and_207_distinct_classes():
    assert cues.CATEGORIES == tuple(sorted(cues.CATEGORIES)) and len(cues.CATEGORIES) == 16
    indices = [i for group in cues.IMAGENET_INDICES.values() for i in group]
    assert len(indices) == len(set(indices)) == 207 and 0 <= min(indices) and max(indices) < 1000
    assert len(cues.IMAGENET_INDICES["dog"]) == 109 and cues.IMAGENET_INDICES["knife"] == (499,)


def test_logits_or_a_wrong_width_are_refused():
    with pytest.raises(ValueError, match="not probabilities.*softmax output, not its logits"):
        cues.category_scores(np.linspace(-3, 3, 1000)[None])
    with pytest.raises(ValueError, match=r"shape \(N, 1000\).*got shape \(2, 10\)"):
        cues.category_scores(np.full((2, 10), 0.1))


def test_other_categories_can_be_mapped_by_the_same_rule():
    scores = cues.category_scores(np.array([[0.1, 0.2, 0.7]]), {"one": (0,), "two and three": (1, 2)})
    np.testing.assert_allclose(scores, [[0.1, 0.45]])


# ----------------------------------------------------------------------------- the measures

# (decision, shape, texture) of ten images, counted by hand: shape hits 2, texture hits 5,
# neither 2 (the dog and the knife), same-category images 1 (cat on cat, left out).
HAND_BUILT = [("cat", "cat", "elephant"), ("clock", "clock", "bird"),
              ("elephant", "dog", "elephant"), ("bird", "car", "bird"), ("bird", "cat", "bird"),
              ("oven", "knife", "oven"), ("boat", "chair", "boat"),
              ("dog", "bear", "truck"), ("knife", "car", "bottle"), ("cat", "cat", "cat")]


def wilson(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval, written out (Wilson 1927)."""
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return centre - half, centre + half


def test_shape_bias_of_hand_built_decisions():
    decisions, shapes, textures = zip(*HAND_BUILT)
    result = cues.shape_bias(decisions, shapes, textures)
    assert (result.shape_hits, result.texture_hits, result.neither, result.same_category) == (2, 5, 2, 1)
    assert result.bias == pytest.approx(2 / 7)
    assert (result.low, result.high) == pytest.approx(wilson(2, 7), abs=1e-9)
    assert result.low < result.bias < result.high
    assert str(result).startswith("shape bias 0.29 (95% interval 0.08-0.64; 2 shape vs 5 texture decisions; 2 neither")


def test_shape_bias_without_any_hit_is_undefined_not_zero():
    result = cues.shape_bias(["dog", "cat"], ["car", "cat"], ["boat", "cat"])
    assert math.isnan(result.bias) and (result.low, result.high) == (0.0, 1.0)
    assert "undefined" in str(result)


def test_shape_bias_by_category_counts_the_images_of_each_shape():
    decisions, shapes, textures = zip(*HAND_BUILT)
    per_category = cues.shape_bias_by_category(decisions, shapes, textures)
    assert list(per_category) == sorted(set(shapes))
    assert (per_category["cat"].shape_hits, per_category["cat"].texture_hits, per_category["cat"].same_category) == (1, 1, 1)
    assert per_category["car"].texture_hits == 1 and per_category["car"].neither == 1
    assert sum(b.shape_hits for b in per_category.values()) == 2


def test_accuracy_counts_and_interval():
    result = cues.accuracy(["cat", "dog", "cat", "car"], ["cat", "cat", "cat", "car"])
    assert (result.correct, result.total, result.value) == (3, 4, 0.75)
    assert (result.low, result.high) == pytest.approx(wilson(3, 4), abs=1e-9)


@pytest.mark.parametrize("call, message", [
    (lambda: cues.shape_bias(["cat"], ["cat", "dog"], ["dog", "cat"]), "one entry per image; got 1, 2 and 2"),
    (lambda: cues.shape_bias([], [], []), "decisions is empty"),
    (lambda: cues.shape_bias(["kitten"], ["cat"], ["dog"]), r"\['kitten'\], which are not among the 16 categories"),
    (lambda: cues.accuracy(["cat"], ["cat", "dog"]), "one entry per image"),
    (lambda: cues.load_cue_conflict(categories="kitten"), "'kitten' is not one of the 16 categories.*airplane, bear"),
    (lambda: cues.load_silhouettes(categories=["cat", "cats"]), "Did you mean 'cat'"),
    (lambda: cues.load_cue_conflict(n_images=0), "n_images must be a whole number >= 1"),
])
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------- patch shuffling

def tiles_of(image: np.ndarray, grid: int) -> list[bytes]:
    height, width = image.shape[:2]
    h, w = height // grid, width // grid
    return [image[r * h:(r + 1) * h, c * w:(c + 1) * w].tobytes() for r in range(grid) for c in range(grid)]


def test_the_shuffle_keeps_every_tile_and_every_pixel():
    images = np.random.default_rng(0).integers(0, 256, (3, 12, 18, 3), dtype=np.uint8)  # not square
    shuffled = cues.shuffle_patches(images, 3, seed=1)
    assert shuffled.shape == images.shape and shuffled.dtype == images.dtype
    for before, after in zip(images, shuffled):
        assert sorted(tiles_of(before, 3)) == sorted(tiles_of(after, 3))          # each tile once, unchanged
        np.testing.assert_array_equal(np.sort(before, axis=None), np.sort(after, axis=None))
        assert tiles_of(before, 3) != tiles_of(after, 3)                          # and moved
    orders = [[tiles_of(image, 3).index(tile) for tile in tiles_of(moved, 3)] for image, moved in zip(images, shuffled)]
    assert len({tuple(order) for order in orders}) > 1                             # each image its own order


def test_a_one_by_one_grid_is_the_identity_and_the_seed_repeats_the_shuffle():
    images = np.random.default_rng(1).uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    np.testing.assert_array_equal(cues.shuffle_patches(images, 1, seed=5), images)
    np.testing.assert_array_equal(cues.shuffle_patches(images, 4, seed=5), cues.shuffle_patches(images, 4, seed=5))
    assert not np.array_equal(cues.shuffle_patches(images, 4, seed=5), cues.shuffle_patches(images, 4, seed=6))


def test_one_image_and_grey_images_keep_their_shape():
    image = np.arange(16 * 16).reshape(16, 16)
    shuffled = cues.shuffle_patches(image, 4)
    assert shuffled.shape == (16, 16) and sorted(tiles_of(image, 4)) == sorted(tiles_of(shuffled, 4))
    assert cues.shuffle_patches(np.zeros((16, 16, 3)), 2).shape == (16, 16, 3)


def test_a_grid_that_does_not_divide_the_image_names_the_grids_that_do():
    with pytest.raises(ValueError, match=r"grid=5 does not divide the images' 224x224 pixels.*1, 2, 4, 7, 8, 14, 16"):
        cues.shuffle_patches(np.zeros((1, 224, 224, 3)), 5)
    with pytest.raises(ValueError, match="grid must be a whole number >= 1"):
        cues.shuffle_patches(np.zeros((1, 8, 8, 3)), 0)
    with pytest.raises(ValueError, match="empty"):
        cues.shuffle_patches(np.zeros((0, 8, 8, 3)), 2)


# ----------------------------------------------------------------------------- the offline stimuli

@pytest.fixture(scope="module")
def offline_folder() -> Path:
    """The ready folder of stimuli that $COURSEKIT_TEXTURE_SHAPE_DIR names (as .ci/run sets it)."""
    folder = os.environ.get(env.TEXTURE_SHAPE_VARIABLE, "").strip()
    if not folder or not Path(folder).is_dir():
        unavailable("offline texture-vs-shape folder", f"{env.TEXTURE_SHAPE_VARIABLE} is not set to a folder")
    return Path(folder)


def test_every_offline_file_matches_the_manifest(offline_folder):
    manifest = _stimuli_files.parse(_stimuli_files.FILES)
    files = sorted(p for kind in cues.KINDS for p in (offline_folder / kind).rglob("*.png"))
    assert len(files) >= 651 + 160 + 160
    for path in files:
        relative = path.relative_to(offline_folder).as_posix()
        size, blob = manifest[relative]
        content = path.read_bytes()
        assert len(content) == size and downloads.git_blob_id(content).startswith(blob), relative
    assert sum(path.startswith("cue-conflict/") for path in manifest) == 1280


def test_loading_spreads_the_images_over_the_categories(offline_folder, monkeypatch):
    monkeypatch.setenv(env.TEXTURE_SHAPE_VARIABLE, str(offline_folder))
    stimuli = cues.load_cue_conflict(n_images=40, seed=3)
    assert stimuli.images.shape == (40, 224, 224, 3) and stimuli.images.dtype == np.uint8
    assert sorted(np.unique(stimuli.shapes, return_counts=True)[1]) == [2] * 8 + [3] * 8
    assert all(f.split("/")[2].startswith(shape) for f, shape in zip(stimuli.files, stimuli.shapes))
    assert cues.load_cue_conflict(n_images=40, seed=3).files == stimuli.files
    cats = cues.load_cue_conflict(categories="cat", size=96)
    assert set(cats.shapes) == {"cat"} and cats.images.shape[1:] == (96, 96, 3) and len(cats) > 30
    assert np.any(~cats.conflict)  # same-category images are kept (shape_bias leaves them out)
    silhouettes = cues.load_silhouettes(per_category=2)
    assert len(silhouettes) == 32 and silhouettes.textures is None
    assert [f.rsplit("/", 1)[1] for f in silhouettes.files[:2]] == ["airplane1.png", "airplane2.png"]


def test_a_folder_laid_out_like_the_repository_is_read_too(offline_folder, tmp_path):
    source = offline_folder / "cue-conflict" / "cat"
    copied = tmp_path / "stimuli" / "style-transfer-preprocessed-512" / "cat"
    copied.mkdir(parents=True)
    for path in sorted(source.glob("*.png"))[:3]:
        shutil.copy(path, copied / path.name)
    stimuli = cues.load_cue_conflict(tmp_path)
    assert len(stimuli) == 3 and set(stimuli.shapes) == {"cat"}
    with pytest.raises(FileNotFoundError, match=r"holds no edges/ folder.*stimuli/ folder of github.com/rgeirhos"):
        cues.load_edges(tmp_path)


def test_the_smoke_models_shape_bias_lies_between_texture_and_shape(offline_folder, monkeypatch, mobilenet_v2):
    """MobileNetV2 (real ImageNet weights) on the smoke profile's share of the offline stimuli: an
    ImageNet CNN decides more by texture than by shape (ResNet-50: 0.21), well above 0 though."""
    monkeypatch.setenv(env.TEXTURE_SHAPE_VARIABLE, str(offline_folder))
    stimuli = cues.load_cue_conflict(n_images=env.profile("smoke").cue_conflict_images)
    decided = cues.decisions(mobilenet_v2.model, stimuli.images, mobilenet_v2.preprocess)
    result = cues.shape_bias(decided, stimuli.shapes, stimuli.textures)
    print(f"MobileNetV2 on {len(stimuli)} offline cue-conflict images: {result}")
    assert 0.05 < result.low and result.high < 0.6, str(result)
    assert result.shape_hits + result.texture_hits >= 60   # enough decisions for the interval to mean something
    preprocessed = cues.decisions(mobilenet_v2.model, mobilenet_v2.preprocess(stimuli.images[:8]))
    np.testing.assert_array_equal(preprocessed, decided[:8])


# ----------------------------------------------------------------------------- downloading, against a local server

class StimuliServer(http.server.ThreadingHTTPServer):
    """Serves ``folder`` (the course's layout) at the repository's paths (``/stimuli/<remote folder>/...``).

    ``cut_short``: {course path: n}: the first n answers send half the file and close (with the
    full Content-Length when ``honest_length``, else a Content-Length of the half). ``missing``:
    course paths answered with 404. ``requests``: how often each course path was asked for.
    """

    def __init__(self, folder: Path):
        self.folder, self.cut_short, self.missing, self.requests = folder, {}, set(), {}
        self.honest_length = True
        local = {remote: course for course, remote in _stimuli_files.REMOTE_FOLDERS.items()}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                _, _, remote, rest = self.path.split("/", 3)
                course = f"{local.get(remote, remote)}/{rest}"
                server.requests[course] = server.requests.get(course, 0) + 1
                path = server.folder / course
                if course in server.missing or not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                short = server.cut_short.get(course, 0) > 0
                if short:
                    server.cut_short[course] -= 1
                    body = body[: len(body) // 2]
                self.send_response(200)
                full = short and server.honest_length
                self.send_header("Content-Length", str(len(body) * 2 if full else len(body)))
                self.end_headers()
                self.wfile.write(body)
                if short:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/stimuli/"


@pytest.fixture
def server(offline_folder, monkeypatch):
    monkeypatch.delenv(env.FORCE_OFFLINE_VARIABLE, raising=False)
    monkeypatch.delenv(env.TEXTURE_SHAPE_VARIABLE, raising=False)
    running = StimuliServer(offline_folder)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


EDGES = ["edges/cat/cat1.png", "edges/cat/cat2.png", "edges/dog/dog1.png"]


def test_a_download_puts_checked_files_in_place(server, offline_folder, tmp_path):
    folder = cues.download_stimuli(EDGES, cache=tmp_path, source_url=server.url, progress=False)
    for path in EDGES:
        assert (folder / path).read_bytes() == (offline_folder / path).read_bytes()
    cues.download_stimuli(EDGES, cache=tmp_path, source_url=server.url, progress=False)
    assert all(count == 1 for count in server.requests.values())        # the second call found them all
    assert not list(tmp_path.rglob("*.part"))


@pytest.mark.parametrize("honest_length", [True, False], ids=["connection-closed-early", "short-body"])
def test_a_file_cut_short_is_refused_and_fetched_again(server, offline_folder, tmp_path, honest_length):
    server.honest_length = honest_length
    server.cut_short = {EDGES[0]: 1}
    cues.download_stimuli(EDGES, cache=tmp_path, source_url=server.url, progress=False)
    assert server.requests[EDGES[0]] == 2
    assert (tmp_path / EDGES[0]).read_bytes() == (offline_folder / EDGES[0]).read_bytes()


def test_a_file_that_always_arrives_short_is_never_used(server, tmp_path):
    server.cut_short = {EDGES[0]: 99}
    with pytest.raises(downloads.DownloadError, match=rf"into {tmp_path}.*{EDGES[0]}.*COURSEKIT_TEXTURE_SHAPE_DIR"):
        cues.download_stimuli(EDGES, cache=tmp_path, source_url=server.url, progress=False)
    assert not (tmp_path / EDGES[0]).exists() and not list(tmp_path.rglob("*.part"))


def test_a_partial_file_left_in_the_cache_is_fetched_again(server, offline_folder, tmp_path):
    (tmp_path / EDGES[0]).parent.mkdir(parents=True)
    (tmp_path / EDGES[0]).write_bytes((offline_folder / EDGES[0]).read_bytes()[:100])
    cues.download_stimuli(EDGES[:1], cache=tmp_path, source_url=server.url, progress=False)
    assert (tmp_path / EDGES[0]).read_bytes() == (offline_folder / EDGES[0]).read_bytes()


def test_a_missing_file_gives_the_clear_error(server, tmp_path):
    server.missing = {EDGES[1]}
    with pytest.raises(downloads.DownloadError) as error:
        cues.download_stimuli(EDGES, cache=tmp_path, source_url=server.url, progress=False)
    message = str(error.value)
    assert "HTTP 404" in message and str(tmp_path) in message and "edges/cat/cat2.png" in message
    assert f"set {env.TEXTURE_SHAPE_VARIABLE} to a folder holding the stimuli" in message


def test_no_network_names_the_folder_and_the_offline_option(server, tmp_path, monkeypatch):
    closed = server.url
    server.shutdown()
    server.server_close()                     # nothing listens there any more
    with pytest.raises(downloads.DownloadError, match=rf"into {tmp_path}.*could not be read.*{env.TEXTURE_SHAPE_VARIABLE}"):
        cues.download_stimuli(EDGES, cache=tmp_path, source_url=closed, progress=False)
    monkeypatch.setenv(env.FORCE_OFFLINE_VARIABLE, "1")
    with pytest.raises(downloads.DownloadError, match="COURSEKIT_OFFLINE forbids downloading them"):
        cues.download_stimuli(EDGES, cache=tmp_path, source_url=closed, progress=False)


def test_the_loader_downloads_only_what_it_needs_into_keras_cache(server, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(cues, "SOURCE_URL", server.url)
    edges = cues.load_edges(per_category=1, categories=["cat", "dog"])
    assert list(edges.shapes) == ["cat", "dog"] and "github.com/rgeirhos/texture-vs-shape" in edges.source
    assert sorted(server.requests) == ["edges/cat/cat1.png", "edges/dog/dog1.png"]
    assert (tmp_path / "datasets" / "texture-vs-shape" / "edges" / "cat" / "cat1.png").is_file()
