"""mdm-lens: hooks, samplers and tracing for masked diffusion language models."""
