"""keras.datasets: MNIST from a local mnist.npz, and scikit-learn's bundled digits shaped like MNIST."""
from . import digits, mnist  # noqa: F401
