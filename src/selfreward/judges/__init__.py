"""Everything that judges, as templates plus pure functions.

    templates   the one loader and the one renderer of every judge prompt (rubric, pairwise, MT-Bench grading);
                only the template's own delimiters are escaped inside the texts put into it
    rubric      the additive 0-5 rubric: score rows from raw judgments (sample) or digit probabilities (expected)
    scorers     the rubric scorers chosen by judge.mode, each stating the backend capabilities it needs
    pairwise    A/B verdicts in both orders: rendering, parsing, combining
    metrics     agreement with human rankings, beside the length and random baselines
    sets        readers of human-ranked judge-evaluation sets
    agreement   a judge scored against those sets (the eval-judge command and stage)
    eft         EFT data the paper's way (build-eft), pure

Raw judge text is kept in every row these produce; a parser returns None when it cannot read a judgment.
"""
