"""The GAN as a plain torch network: generator, encoder and discriminator.

Attribute names are the state-dict keys saved in bundles (generator.*,
encoder.*, disc_body.*, disc_head.*): renaming one makes older bundles
unloadable.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gendetect.models.components import (
    GenerativeNetwork,
    fill_missing,
    mlp,
    observed_only,
    squared_error,
)
from gendetect.models.gan.loss import GAUSSIAN_REFERENCE_SCALE
from gendetect.models.gan.params import GANParams


class GANNetwork(GenerativeNetwork):
    def __init__(
        self,
        n_features: int,
        hidden: Sequence[int],
        latent_dim: int,
        reference_scale: float = 0.0,
    ) -> None:
        super().__init__()
        hidden = list(hidden)
        self.latent_dim = latent_dim
        # Standard deviation of the Gaussian reference the discriminator was
        # trained against (0: none); not a weight, so not in the state dict.
        self.reference_scale = reference_scale
        # Mean and spread of the discriminator's hidden features on training
        # rows (fit_feature_distance); None: the score is the verdict (and
        # bundles saved before the feature distance existed stay so).
        self.feature_center: torch.Tensor | None = None
        self.feature_scale: torch.Tensor | None = None
        # Creation order fixes the random initialisation for a seed: keep it.
        self.generator = mlp([latent_dim, *reversed(hidden), n_features])
        self.encoder = mlp([n_features, *hidden, latent_dim])
        # Spectral norm bounds the discriminator's Lipschitz constant (see loss.py).
        self.disc_body = mlp([n_features, *hidden], spectral_norm=True, final_activation=True)
        self.disc_head = nn.utils.parametrizations.spectral_norm(nn.Linear(hidden[-1], 1))

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """The discriminator's logit: higher = more like the training data."""
        return self.disc_head(self.disc_body(x)).squeeze(1)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator(self.encoder(x))

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [*self.disc_body.parameters(), *self.disc_head.parameters()]

    def generator_parameters(self) -> list[nn.Parameter]:
        """The generator's and the encoder's: trained together, against D."""
        return [*self.generator.parameters(), *self.encoder.parameters()]

    @torch.no_grad()
    def feature_errors(self, x: torch.Tensor) -> torch.Tensor:
        x, observed = fill_missing(x)
        return observed_only(squared_error(x, self.reconstruct(x)), observed)

    @torch.no_grad()
    def reconstruction(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder -> generator reconstruction (gaps imputed)."""
        x, _ = fill_missing(x)
        return self.reconstruct(x)

    @torch.no_grad()
    def fit_feature_distance(self, x_train: torch.Tensor) -> None:
        """Score by the distance of the discriminator's last hidden layer
        from its training mean, feature by feature in units of its training
        spread, instead of by the verdict (why: models/README.md)."""
        h = self.disc_body(fill_missing(x_train)[0]).double()
        self.feature_center = h.mean(dim=0).float()
        # A unit that never moved on training rows gets a small floor.
        self.feature_scale = (h.std(dim=0) + 1e-6).float()

    def extra_score_state(self) -> dict[str, list[float]] | None:
        if self.feature_center is None or self.feature_scale is None:
            return None
        return {"feature_center": self.feature_center.tolist(),
                "feature_scale": self.feature_scale.tolist()}

    def load_extra_score_state(self, state: dict[str, list[float]] | None) -> None:
        if state is None:
            self.feature_center = self.feature_scale = None
            return
        self.feature_center = torch.tensor(state["feature_center"], dtype=torch.float32)
        self.feature_scale = torch.tensor(state["feature_scale"], dtype=torch.float32)

    @torch.no_grad()
    def extra_score(self, x: torch.Tensor) -> torch.Tensor | None:
        """Higher = less like the training data: the discriminator's hidden
        features' mean squared distance from their training mean (in units
        of their training spread) once fit_feature_distance ran, else its
        verdict.

        Trained against a Gaussian reference, the logit estimates log p_data
        - log p_ref (plus the generator's share); adding -log p_ref =
        |x|^2 / (2 s^2) (up to a constant) makes it an estimate of -log p_data,
        which keeps growing in the tails where a smooth discriminator levels off.
        """
        # Gaps imputed with the median: they move neither the verdict nor
        # the reference term below.
        x, _ = fill_missing(x)
        if self.feature_center is not None and self.feature_scale is not None:
            h = self.disc_body(x)
            return ((h - self.feature_center) / self.feature_scale).pow(2).mean(dim=1)
        verdict = -self.discriminate(x)
        if self.reference_scale > 0:
            verdict = verdict + x.pow(2).sum(dim=1) / (2 * self.reference_scale**2)
        return verdict


def build_gan_network(n_features: int, params: GANParams) -> GANNetwork:
    """Registry entry of "gan" for scoring: the plain network. The Gaussian
    reference's scale is part of the score (extra_score), so it follows
    from the parameters the discriminator was trained with."""
    weight = params.reference_weight or 0.0
    gaussian = weight > 0 and params.reference_kind == "gaussian"
    return GANNetwork(
        n_features,
        hidden=params.hidden,
        latent_dim=params.latent_dim,
        reference_scale=GAUSSIAN_REFERENCE_SCALE if gaussian else 0.0,
    )
