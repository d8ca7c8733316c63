"""HuatuoGPT-o1 re-implementation: shared logic behind the top-level pipeline scripts.

One concern per module:
  formats   - the model's `## Thinking` / `## Final Response` output format (CONTRACTS §4)
  io        - reading inputs, atomic writes, per-item result stores for resume
  llm       - asynchronous OpenAI-compatible client with retries, usage and cost accounting
  runner    - bounded-concurrency item processing with progress, resume and failure limits
  prompts   - every prompt the pipeline sends, English and Chinese
  parsing   - robust JSON extraction from LLM replies
  models    - the embedded default model (SmolLM2-135M-Instruct from GGUF)
  testing   - tiny random models/tokenizers and a loopback OpenAI-protocol server for tests
"""

__version__ = "0.1.0"
