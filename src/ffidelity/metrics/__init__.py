"""Faithfulness metrics: the fidelity engine (Fid, R-Fid, F-Fid), its results, random-mask fine-tuning, ROAR,
ROAD and explanation-size recovery."""
