"""GAN with an encoder for tabular records.

The encoder E maps records to latent codes and is trained jointly so that
G(E(x)) reconstructs x (and E(G(z)) recovers z). The generator also receives
that reconstruction gradient, which anchors it to the data and prevents mode
collapse. Reconstruction is trained through a noisy, prior-penalised code
(see loss.noisy_reconstruction_loss) so that rare patterns are not memorised.
Anomaly score = normalised per-feature reconstruction error (the
explanations). The discriminator's verdict (extra_score) is the score with
score="discriminator" (or added to the reconstruction with "combined").
Trained against the generator alone it ranks anomalies as *more* real (ROC
~0.19 on the handbook data): the generator under-covers the tails and the
discriminator learns "extreme = real". In those modes the discriminator
also sees records from a broadened reference distribution as negatives
(loss.broadened_reference), so the tails are "not data".

- params.py: GANParams, its parameters and their defaults
- torch_model.py: GANNetwork, the plain torch network saved in bundles, and
  build_gan_network (scoring)
- loss.py: discriminator, adversarial, reconstruction and R1 terms
- lightning_model.py: GAN, the LightningModule (training only)
"""
