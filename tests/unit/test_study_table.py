"""The study's table (commands/study.render): every figure the issue lists, formatted, '-' where missing."""

from selfreward.commands.study import render


def test_table_has_every_figure_and_dashes_for_missing():
    row = {"variant": "rubric", "model": "M2", "eft_pairwise_accuracy": 0.554, "eft_shorter_preferred_accuracy": 0.196,
           "eft_length_baseline_accuracy": 0.736, "llmbar_pairwise_accuracy": 0.47,
           "llmbar_shorter_preferred_accuracy": None, "llmbar_length_baseline_accuracy": 0.565,
           "prompt_loose": 0.142, "prompt_strict": 0.128, "inst_loose": 0.254, "inst_strict": 0.225,
           "mean_response_chars": 891.0, "length_growth": 0.998, "heldout_mean_chars": 645.3,
           "pairs": 56, "mean_chosen_chars": 627.0,
           "mean_rejected_chars": 409.0, "vs_M1": "5/26/1", "wall_seconds": 245.3}
    header, rule, line = render({"rows": [row]}).splitlines()
    cells = dict(zip(header.strip("| ").split(" | "), line.strip("| ").split(" | ")))
    assert rule.count("---") == len(cells)
    assert cells == {
        "variant": "rubric", "model": "M2", "EFT acc": "55.4%", "EFT shorter-pref": "19.6%", "EFT length": "73.6%",
        "LLMBar acc": "47.0%", "LLMBar shorter-pref": "-", "LLMBar length": "56.5%",
        "IFEval prompt loose": "14.2%", "IFEval prompt strict": "12.8%", "IFEval instruction loose": "25.4%",
        "IFEval instruction strict": "22.5%", "answer chars": "891", "growth": "0.998",
        "held-back answer chars": "645.3", "pairs": "56",
        "chosen-rejected chars": "218", "vs M1 W/T/L": "5/26/1", "wall s": "245.3"}
