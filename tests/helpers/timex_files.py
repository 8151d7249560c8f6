"""Tiny PAM and Boiler data sets in the TimeX layout (the files the real loaders read), for loader tests."""

import numpy as np
import torch


def write_pam(root, n=20, t=12, f=4, seed=0):
    rng = np.random.default_rng(seed)
    (root / "processed_data").mkdir(parents=True)
    (root / "splits").mkdir()
    x = rng.uniform(0.5, 2.0, size=(n, t, f)).astype(np.float32)
    x[:, :, 0][rng.random((n, t)) < 0.3] = 0.0  # missing readings
    np.save(root / "processed_data" / "PTdict_list.npy", x)
    y = np.arange(n) % 8
    np.save(root / "processed_data" / "arr_outcomes.npy", np.stack([np.zeros(n), y], 1).astype(np.int64))
    split = np.empty(3, dtype=object)
    split[0], split[1], split[2] = np.arange(0, 14), np.arange(14, 16), np.arange(16, 20)
    np.save(root / "splits" / "PAMAP2_split_1.npy", split, allow_pickle=True)
    return x, y


def write_boiler(root, n=30, t=36, f=5):
    root.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(t, n, f, generator=g) * 3 + 7
    y = torch.arange(n) % 2
    torch.save(x, root / "xfull.pt")
    torch.save(y, root / "yfull.pt")
    torch.save((torch.arange(0, 20), torch.arange(20, 24), torch.arange(24, 30)), root / "split=1.pt")
    return x, y
