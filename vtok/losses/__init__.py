"""Training loss terms, below config and training: adversarial (GAN) terms and the LPIPS training term."""
