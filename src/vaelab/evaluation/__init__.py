"""What the evaluate stage measures and draws, and the classifier that judges generated samples.

- :mod:`.passes`: the compiled forward passes of the VAE and the classifier that the others share.
- :mod:`.metrics`: test-set numbers (loss, negative ELBO, reconstruction error, latent-space classifiers)
  and the arrays behind the pictures (reconstructions, prior samples, the latent grid).
- :mod:`.likelihood`: the importance-sampled test negative log-likelihood.
- :mod:`.classifier`: the small CNN the classifier stage trains; its features and predictions judge samples.
- :mod:`.quality`: sample quality from that classifier (FID on its features, confidence, label entropy).
- :mod:`.plots`: the PNGs.
- :mod:`.report`: the evaluate stage's assembly of all of the above for one trained model.
"""
