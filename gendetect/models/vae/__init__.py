"""Variational autoencoder for tabular records.

Anomaly score: the reconstruction error of the posterior mean, per feature
(a Gaussian NLL with a learned decoder variance, registered as "vae"; the
plain squared error with a fixed variance, registered as "vae_mse").

- torch_model.py: VAENetwork, the plain torch network saved in bundles
- loss.py: the negative ELBO and its parts
- lightning_model.py: VAE, the LightningModule, and the registry builders
"""

from gendetect.models.vae.lightning_model import VAE, build_vae, build_vae_mse
from gendetect.models.vae.torch_model import VAENetwork

__all__ = ["VAE", "VAENetwork", "build_vae", "build_vae_mse"]
