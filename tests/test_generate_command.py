"""`vaelab generate`: grids and arrays from a run, a registry URI or a file, and one line for each user mistake."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny import BAR_CLASSES, write_bar_splits

from vaelab.generate_command import main

pytestmark = pytest.mark.slow


@pytest.fixture
def workdir(logged: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with bar images in data/processed and no params.yaml, using the fixture's store."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", logged["store"])
    write_bar_splits(tmp_path / "data/processed")
    return tmp_path


def _generate(*argv: str) -> int:
    with pytest.raises(SystemExit) as ended:
        main(list(argv))
    code = ended.value.code
    assert isinstance(code, int), code
    return code


def test_samples_go_to_png_and_npy_and_equal_the_models_own(workdir: Path, logged: dict[str, str]) -> None:
    from PIL import Image

    import vaelab

    assert _generate(logged["run_id"], "--n", "9", "--seed", "2", "--temperature", "0.5", "--out", "g.png", "--out", "g.npy") == 0
    expected = vaelab.load(logged["run_id"]).sample(9, seed=2, temperature=0.5)
    np.testing.assert_array_equal(np.load(workdir / "g.npy"), expected)
    with Image.open(workdir / "g.png") as picture:
        assert picture.format == "PNG" and picture.size == (700, 750)  # plots.GRID_SIZE at plots.DPI
    # The same weights from the .keras file the train stage saves: the same samples, up to float rounding.
    assert _generate(logged["keras_file"], "--n", "9", "--seed", "2", "--temperature", "0.5", "--out", "k.npy") == 0
    np.testing.assert_allclose(np.load(workdir / "k.npy"), expected, atol=1e-5)
    assert _generate(logged["run_id"], "--latent-grid", "--n", "3") == 0
    assert (workdir / "generated/latent_grid.png").is_file()  # the default --out


def test_interpolation_between_test_images_starts_and_ends_at_their_reconstructions(workdir: Path, logged: dict[str, str]) -> None:
    import vaelab

    assert _generate(logged["model_uri"], "--interpolate", "0", "5", "--steps", "7", "--method", "spherical", "--out", "m.npy") == 0
    path = np.load(workdir / "m.npy")
    assert path.shape == (7, 28, 28, 1)
    model, test = vaelab.load(logged["model_uri"]), vaelab.test_images("data/processed")
    np.testing.assert_allclose(path[[0, -1]], model.reconstruct(test.images[[0, 5]]), atol=1e-6)
    assert _generate(logged["model_uri"], "--reconstruct", "--n", "4", "--out", "r.npy") == 0
    np.testing.assert_array_equal(np.load(workdir / "r.npy"), np.stack([test.images[:4], model.reconstruct(test.images[:4])]))


def test_interpolation_between_two_image_files(workdir: Path, logged: dict[str, str]) -> None:
    from PIL import Image

    for name, value in (("a.png", 40), ("b.png", 220)):
        Image.fromarray(np.full((56, 70, 3), value, dtype=np.uint8)).save(workdir / name)
    assert _generate(logged["run_id"], "--interpolate", "a.png", "b.png", "--steps", "3", "--out", "f.npy") == 0
    path = np.load(workdir / "f.npy")
    assert path.shape == (3, 28, 28, 1)
    # Each file is cropped square, resized and made grey: a flat grey of the same level, so the path starts and
    # ends at the reconstructions of the two flat 28 x 28 images.
    import vaelab

    flat = np.stack([np.full((28, 28, 1), level / 255, dtype=np.float32) for level in (40, 220)])
    np.testing.assert_allclose(path[[0, -1]], vaelab.load(logged["run_id"]).reconstruct(flat), atol=1e-5)


def test_arithmetic_needs_two_classes(workdir: Path, logged: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _generate(logged["run_id"], "--arithmetic") == 2
    assert capsys.readouterr().err == (
        f"vaelab: error: --arithmetic needs data with two classes (an image folder with two subfolders); "
        f"this test split has 3: {', '.join(BAR_CLASSES)}\n"
    )


def test_arithmetic_on_two_classes_moves_class_0_codes_towards_class_1(workdir: Path, logged: dict[str, str]) -> None:
    import vaelab
    from vaelab.data.processed import write_splits
    from vaelab.evaluation.plots import ARITHMETIC_STRENGTHS

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 8), ("val", 4), ("test", 12)):
        arrays[f"x_{split}"] = rng.random((n, 28, 28, 1), dtype=np.float32)
        arrays[f"y_{split}"] = (np.arange(n) % 2).astype("uint8")
    write_splits(workdir / "two", arrays, {"dataset": "image_folder", "image_shape": [28, 28, 1], "class_names": ["plain", "smiling"]})
    (workdir / "params.yaml").write_text("paths:\n  processed: two\n")
    assert _generate(logged["run_id"], "--arithmetic", "--out", "a.npy", "--out", "a.png") == 0
    tiles = np.load(workdir / "a.npy")
    assert tiles.shape == (5, 1 + len(ARITHMETIC_STRENGTHS), 28, 28, 1)
    model, test = vaelab.load(logged["run_id"]), vaelab.test_images(workdir / "two")  # stored as uint8: read back
    mu = model.encode(test.images)[0]
    step = mu[1::2].mean(axis=0) - mu[::2].mean(axis=0)
    np.testing.assert_array_equal(tiles[:, 0], test.images[0:10:2])  # the first five class-0 images
    np.testing.assert_allclose(tiles[:, 2], model.decode(mu[0:10:2] + ARITHMETIC_STRENGTHS[1] * step), atol=1e-6)
    assert (workdir / "a.png").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["0123456789abcdef0123456789abcdef"], "0123456789abcdef0123456789abcdef: not found in the tracking store"),
        (["models:/generative-nope@best"], "models:/generative-nope@best: not found in the tracking store"),
        (["models/missing.keras"], "models/missing.keras: no such model file; run the train stage"),
        (["somewhere/else"], "somewhere/else: no such .keras file, MLflow model folder, run id, runs:/ or models:/ URI"),
        (["--out", "grid.jpg"], "--out grid.jpg: the file name must end in .png or .npy"),
    ],
)
def test_user_mistakes_are_one_line(workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert _generate(*argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vaelab: error: {message}"), err
    assert err.count("\n") == 1


def test_an_old_reconstruct_only_model_is_one_line(workdir: Path, logged: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert _generate(logged["old_run_id"]) == 2
    err = capsys.readouterr().err
    assert "logged before vaelab's generative format and can only reconstruct" in err
    assert err.count("\n") == 1
