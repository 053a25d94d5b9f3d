import matplotlib
import matplotlib.pyplot as plt
import pytest

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def assert_png():
    """Check that a file exists and starts with the PNG signature."""

    def check(path):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    return check


@pytest.fixture
def image_array():
    """The array drawn by the single ``imshow`` of an Axes."""

    def get(ax):
        (image,) = ax.get_images()
        return image.get_array()

    return get
