"""The baseline of benchmarks/train.py: plain `transformers.Trainer` + DeepSpeed, as the paper's `train/train.py`.

    torchrun --nproc_per_node 2 benchmarks/hf_trainer_baseline.py --model DIR --data FILE.jsonl --steps N --json OUT

Same model, same tokenisation and loss mask (nat_ray.training.tokenize), same DeepSpeed ZeRO-3 config, same batch
sizes and length grouping as the nat_ray loop; the loss is the model's own (full-vocabulary logits at every position,
as the paper's trainer). Counts non-pad tokens per optimizer step, times the steps, and samples each process's peak
resident memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

    from nat_ray.config import TrainConfig
    from nat_ray.storage import read_examples
    from nat_ray.training.data import collate
    from nat_ray.training.memory import GB, PeakRSS
    from nat_ray.training.strategy import fill_deepspeed_config
    from nat_ray.training.tokenize import encode_all

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--micro", type=int, default=2)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()

    memory = PeakRSS()
    world = int(__import__("os").environ.get("WORLD_SIZE", "1"))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    encoded, _ = encode_all(tokenizer, read_examples(args.data), args.max_length, drop_no_loss=True)
    rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in encoded]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    cfg = TrainConfig(
        model=args.model,
        data=args.data,
        global_batch_size=args.global_batch,
        micro_batch_size=args.micro,
        num_workers=world,
        max_length=args.max_length,
    )
    template = json.loads((Path(__file__).resolve().parents[1] / cfg.deepspeed_config).read_text())
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    ds = fill_deepspeed_config(template, cfg, model.config.hidden_size, cuda=False, bf16_ok=False)

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(rows)

        def __getitem__(self, i: int) -> dict:
            return rows[i]

    real_tokens = [0]

    def collator(batch: list[dict]) -> dict:
        out = collate([b["input_ids"] for b in batch], [b["labels"] for b in batch], pad)
        real_tokens[0] += int(out["attention_mask"].sum())
        return out

    step_times: list[tuple[float, int]] = []

    class Timer(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):  # type: ignore[no-untyped-def]
            step_times.append((time.monotonic(), real_tokens[0]))

    targs = TrainingArguments(
        output_dir="/tmp/hf_trainer_baseline",
        per_device_train_batch_size=args.micro,
        gradient_accumulation_steps=cfg.accumulation,
        max_steps=args.steps,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio in transformers 5
        weight_decay=cfg.weight_decay,
        deepspeed=ds,
        use_cpu=True,
        train_sampling_strategy="group_by_length",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=Rows(), data_collator=collator, callbacks=[Timer()])
    trainer.train()
    # tokens counted per process; sum over processes
    t = torch.tensor([float(step_times[-1][1] - step_times[0][1])])
    peak = torch.tensor([float(memory.stop())])
    if dist.is_initialized():
        dist.all_reduce(t)
        dist.all_reduce(peak, op=dist.ReduceOp.MAX)
    seconds = step_times[-1][0] - step_times[0][0]
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        result = {"steps_timed": len(step_times) - 1, "seconds": seconds, "tokens_per_s": t.item() / seconds}
        result["peak_rss_gb"] = peak.item() / GB  # the larger of the two processes
        args.json.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
