"""The image-generation task: text-to-image diffusion with diffusers — pretrained pipelines
(Stable Diffusion and any ``save_pretrained`` text-to-image pipeline) and small pixel-space models
trained here on captioned images."""
