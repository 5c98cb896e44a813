"""dllm A2D Qwen2 / Qwen2.5 (`model_type` "a2d-qwen2"): Qwen2 with q/k/v bias run bidirectionally; sampled by
dllm's MDLM or BD3LM sampler. The model is `_a2d`, the spec `_a2d_spec`.

Mask id fallback 151665: the id `<|mask|>` gets when dllm's tokenizer setup adds it after Qwen2.5's last special
token (151664); the checkpoint's tokenizer (saved with the mask token) or config wins over it."""

from ._a2d_spec import make_spec

SPEC = make_spec("a2d_qwen2", "qwen2", "a2d-qwen2", "A2DQwen2LMHeadModel", 151665, "dream")
