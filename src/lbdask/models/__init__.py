"""VAE models behind one interface: `load_model(name_or_path) -> LatentModel`."""
from lbdask.models.identity import device_class
from lbdask.models.latent_model import LatentModel
from lbdask.models.loader import load_model

__all__ = ["LatentModel", "device_class", "load_model"]
