"""HuatuoGPT-o1 re-implementation: shared logic behind the top-level pipeline scripts.

One concern per module (the data formats they exchange: docs/data_formats.md):
  contract      the data contract: every record field name, and the one loader for data sets
                (local JSON/JSONL, `datasets` folder, hub name with a `:config` suffix)
  llm           asynchronous OpenAI-compatible client: retries, usage and cost, budget, dry-run report
  runner        bounded-concurrency item processing with progress, resume and failure limits
  io            reading inputs (one-line errors), atomic writes, per-item result stores
  cli           boolean flags, exit codes, the API stages' main()
  lock          one run per output folder: a lock file naming its owner (pid + start time)
  redact        secrets masked before anything is shown or written (URL credentials, keys, secret flags)
  prompts       every prompt the pipeline sends, English and Chinese
  parsing       robust JSON and verdict extraction from LLM replies
  formats       the model's `## Thinking` / `## Final Response` format (docs/data_formats.md §4)
  construct     stage 1: multiple-choice -> verifiable open-ended problems
  decontam, question_rules, difficulty, stage1_split   stage 1's paper steps: eval-set screening, question rules, small-models filter, SFT/RL split
  search        stage 2: verifier-guided search for complex reasoning paths
  checkpoints   training runs: run identity, complete checkpoints, the resume decision, final save
  sft_data, sft stage 3: SFT data rendering/masking/packing and the Trainer run
  rl_data, rewards   stage 4: RL prompts mapped to their answers; the verifier reward
  rl_common     stage 4: what PPO, GRPO and verifier training share (flags, model/data loading, pad token)
  ppo, grpo, verifier_train   stage 4: PPO on trl's PPOTrainer, GRPO, verifier training
  verl_data, verl_reward   stage 4 past one node: our RL data as verl's parquet, our reward as verl's function
  eval_run, eval_backends, eval_scoring, serving   evaluation and SGLang serving
  eval_original, eval_data, eval_chart, eval_rebuild   the original's scoring, the paper's eval file, the chart, a rebuilt item set
  multi_gpu     global batch from the world size, ZeRO-3-aware embedding size, loading outside ZeRO-3
  rl_options    PPO/GRPO flags beyond trl: checks, global batch, bf16 loading, gradient checkpointing
  train_checks  training flags: unknown flags (argparse exit 2), values that cannot train (one line)
  run_record    wandb project/entity/mode, run_args.json with every flag, secrets masked
  plots         PNG curves of a run's log history, written when training ends
  save_only_model   weights-only checkpoints: what a resume restores and what it cannot
  models        the embedded default model (SmolLM2-135M-Instruct from GGUF)
  testing       test doubles: tiny random models/tokenizers and a loopback OpenAI-protocol server
  testing_search  test double: the scripted search-stage model behind that server
"""

__version__ = "0.1.0"
