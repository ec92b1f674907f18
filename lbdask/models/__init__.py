"""VAE models behind one interface: `load_model(name_or_path) -> LatentModel`."""
from .identity import device_class
from .latent_model import LatentModel
from .loader import load_model

__all__ = ["LatentModel", "device_class", "load_model"]
