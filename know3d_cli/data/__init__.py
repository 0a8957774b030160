"""Training data for Know3D: 3D assets -> latents, renders, captions and cached conditions (`know3d data`)."""
