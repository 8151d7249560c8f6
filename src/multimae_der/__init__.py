"""MultiMAE-DER: audio-visual dynamic emotion recognition with a masked-autoencoder video transformer."""

__version__ = "0.1.0"
