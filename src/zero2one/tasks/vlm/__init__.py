"""Vision-language models: a zero2one image classifier's feature map as a few visual tokens,
projected into a language model's embeddings (LLaVA-style), trained here on question-answer
data made from the images we have."""
