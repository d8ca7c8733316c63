"""HuatuoGPT-o1 re-implementation: shared logic behind the top-level pipeline scripts.

One concern per module:
  llm           asynchronous OpenAI-compatible client: retries, usage and cost, budget, dry-run report
  runner        bounded-concurrency item processing with progress, resume and failure limits
  io            reading inputs (one-line errors), atomic writes, per-item result stores
  cli           boolean flags, exit codes, the API stages' main()
  prompts       every prompt the pipeline sends, English and Chinese
  parsing       robust JSON and verdict extraction from LLM replies
  formats       the model's `## Thinking` / `## Final Response` format (CONTRACTS §4)
  construct     stage 1: multiple-choice -> verifiable open-ended problems
  search        stage 2: verifier-guided search for complex reasoning paths
  sft_data, sft stage 3: SFT data rendering/masking/packing and the Trainer run
  rl_data, rewards, ppo, grpo, verifier_train   stage 4: RL data, verifier reward, PPO/GRPO, verifier training
  eval_run, eval_backends, eval_scoring, serving   evaluation and SGLang serving
  eval_original, eval_data, eval_chart, eval_rebuild   the original's scoring, the paper's eval file, the chart, a rebuilt item set
  models        the embedded default model (SmolLM2-135M-Instruct from GGUF)
  testing       tiny random models/tokenizers and a loopback OpenAI-protocol server for tests
"""

__version__ = "0.1.0"
