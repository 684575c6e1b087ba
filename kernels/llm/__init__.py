"""The small Llama-style decoder shared by chapters 13-20: dimensions from published configs, seeded random
weights, an eager Hugging Face-style model with a static KV cache, and greedy generation with its float64
teacher-forced reference. Nothing is downloaded."""

from kernels.llm.config import LLAMA_3_2_1B, LLAMA_3_8B, QWEN2_5_0_5B, TINY, LlamaConfig
from kernels.llm.model import Decoder, DecoderLayer, KVCache, greedy_generate, teacher_forced_logits

__all__ = ["LLAMA_3_2_1B", "LLAMA_3_8B", "QWEN2_5_0_5B", "TINY", "Decoder", "DecoderLayer", "KVCache", "LlamaConfig",
           "greedy_generate", "teacher_forced_logits"]
