"""Variational autoencoder for tabular records.

Anomaly score: the reconstruction error of the posterior mean, per feature
(a Gaussian NLL with a learned decoder variance, registered as "vae"; the
plain squared error with a fixed variance, registered as "vae_mse").

- params.py: VAEParams, its parameters and their defaults
- torch_model.py: VAENetwork, the plain torch network saved in bundles, and
  build_vae_network (scoring)
- loss.py: the negative ELBO and its parts
- lightning_model.py: VAE, the LightningModule (training only)
"""
