"""dllm A2D Llama (`model_type` "a2d-llama"): Llama (llama3 rope scaling included) run bidirectionally; sampled
by dllm's MDLM or BD3LM sampler. The model is `_a2d`, the spec `_a2d_spec`.

Mask id fallback 128256: the id `<|mask|>` gets when dllm's tokenizer setup adds it after Llama 3's 128256
tokens (a converted checkpoint must have resized its embeddings to hold it); the checkpoint's tokenizer or config
wins over it."""

from ._a2d_spec import make_spec

SPEC = make_spec("a2d_llama", "llama", "a2d-llama", "A2DLlamaLMHeadModel", 128256, "llada")
