"""HuatuoGPT-o1 re-implemented: the logic behind the top-level pipeline scripts.

The folders name the stages; imports run only downward (the shared core <- every stage;
train <- rl), and eval and rl do not import each other. Each entry point's parser lives in its
module as make_parser() beside main(argv); the top-level scripts only call main.

  (core)    contract   the data contract: every record field name, the data-set loader, the eval-file reader
            io         reading inputs (one-line errors), atomic writes, per-item result stores
            llm        asynchronous OpenAI-compatible client: retries, usage and cost, budget, dry run
            runner     bounded-concurrency item processing with progress, resume and failure limits
            cli        boolean flags, dataclass flags, light --help, the exit-code contract
            lock       one run per output folder
            redact     secrets masked before anything is shown or written
            prompts    every prompt the pipeline sends, English and Chinese
            parsing    JSON and verdict extraction from LLM replies
            formats    the model's `## Thinking` / `## Final Response` format
            models     the one model loader (one-line errors) and the embedded default model
  datagen/  stages 1-2: construct (MCQ -> verifiable problems), decontam, question_rules,
            difficulty, stage1_split, search (verifier-guided reasoning search -> SFT data)
  train/    stage 3 and what every trainer shares: sft, sft_data, checkpoints, run_record,
            multi_gpu, checks, plots, save_only_model, mfu, show_answer
  rl/       stage 4: ppo / ppo_args / ppo_config / ppo_core / ppo_trainer / ppo_reward / ppo_vllm,
            grpo / grpo_trainer, rewards, data, options, common, verifier_train, verl_data, verl_reward
  eval/     stage 5: run, backends, scoring, original, data, chart, rebuild, serving
  testing/  test doubles: tiny_models, openai_server (the loopback GPT-4o), search (scripted model)
"""

__version__ = "0.1.0"
