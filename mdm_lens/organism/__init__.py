"""The tiny-if model organism: a procedurally generated instruction-following corpus, its tokenizer,
and the masked-diffusion training loop that produces `mdm_lens/organisms/tiny-if`."""
