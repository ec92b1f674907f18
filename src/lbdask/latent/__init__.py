"""Latents as stored: the pcodec codec of quantised latents (`codec`), the canonical decode of a stored latent back to pixels (`decode`), and refinement of a latent before it is stored (`refine`)."""
