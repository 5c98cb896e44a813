"""Organism v3 (smol-mdm): SmolLM2-135M-Instruct converted to a masked-diffusion LM, corpus v3, training."""
