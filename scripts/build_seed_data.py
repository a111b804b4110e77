"""Rebuild the shipped seed data from ../shared/data/oasst2_eft (deterministic; run from the repo root).

    python scripts/build_seed_data.py [--source PATH]

Splits by prompt: a prompt's bucket is sha256(prompt_id) mod 100; < 45 -> IFT, < 85 -> EFT train, else EFT eval,
so no prompt is in two splits. IFT takes the best human-scored reply per prompt (quality >= 0.5). EFT keeps
every reply with a human quality label, with a rubric target derived from it (selfreward.eft).
"""

import argparse
import hashlib
import json
from collections import defaultdict
from pathlib import Path

from selfreward.eft import human_to_score, target_for

SOURCE = Path(__file__).resolve().parents[1].parent / "shared/data/oasst2_eft/oasst2_evaluation_fine_tuning.jsonl"
OUT = Path(__file__).resolve().parents[1] / "src/selfreward/data/seed"


def bucket(prompt_id: str) -> str:
    b = int(hashlib.sha256(prompt_id.encode()).hexdigest(), 16) % 100
    return "ift" if b < 45 else "eft_train" if b < 85 else "eft_eval"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", type=Path, default=SOURCE)
    args = ap.parse_args()
    by_prompt = defaultdict(list)
    unscored = 0
    for line in args.source.open(encoding="utf-8"):
        row = json.loads(line)
        if row["quality_score"] is None:
            unscored += 1
            continue
        by_prompt[row["prompt_id"]].append(row)
    splits = defaultdict(list)
    low_best = 0
    for pid in sorted(by_prompt):
        rows = sorted(by_prompt[pid], key=lambda r: (-r["quality_score"], r["response_id"]))
        split = bucket(pid)
        if split == "ift":
            if rows[0]["quality_score"] < 0.5:
                low_best += 1
                continue
            splits["ift"].append({"id": rows[0]["response_id"], "prompt": rows[0]["prompt_text"],
                                  "response": rows[0]["response_text"]})
            continue
        for r in rows:
            n = human_to_score(r["quality_score"])
            splits[split].append({"id": r["response_id"], "prompt_id": pid, "prompt": r["prompt_text"],
                                  "response": r["response_text"], "human_score": r["quality_score"],
                                  "score": n, "target": target_for(n)})
    OUT.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        with (OUT / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{name}: {len(rows)} rows, {len({r.get('prompt_id', r['id']) for r in rows})} prompts")
    print(f"dropped: {unscored} replies without a human score, {low_best} IFT prompts whose best reply < 0.5")


if __name__ == "__main__":
    main()
