"""Chapter 16, production inference: the fixes a profile of a Hugging Face-style server shows first. Padding and
full-vocabulary logits in batched prefill, the dynamic KV cache and eager ``generate``, bf16 weights read by every
decode step, the host waiting on the GPU between steps, and the launch cost of eager mixed steps."""
