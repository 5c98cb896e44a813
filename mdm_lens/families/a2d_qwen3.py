"""dllm A2D Qwen3 (`model_type` "a2d-qwen3", e.g. dllm-hub/Qwen3-0.6B-diffusion-{mdlm,bd3lm}-v0.1): Qwen3 with
QK-norm run bidirectionally; sampled by dllm's MDLM or BD3LM sampler. The model is `_a2d`, the spec `_a2d_spec`.

Mask id fallback 151669: the id `<|mask|>` gets when dllm's tokenizer setup adds it after Qwen3's last special
token (151668); the checkpoint's tokenizer (saved with the mask token) or config wins over it."""

from ._a2d_spec import make_spec

SPEC = make_spec("a2d_qwen3", "qwen3", "a2d-qwen3", "A2DQwen3LMHeadModel", 151669, "dream")
