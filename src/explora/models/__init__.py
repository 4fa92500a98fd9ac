"""Networks and the generative and predictive models the bonuses use."""

from explora.models.vae import VAE

__all__ = ["VAE"]
