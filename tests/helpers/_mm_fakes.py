"""In-memory clips that follow the data contract, with the label planted in the pixels."""

import torch
from torch.utils.data import Dataset


class PlantedClips(Dataset):
    """Clip ``i`` has label ``i % num_classes``; colour channel ``label`` of every video frame and audio image
    is brightened by 120 over uniform noise in [0, 100), so a model can learn the label from either modality."""

    def __init__(self, n: int = 48, num_classes: int = 3, size: int = 32, frames: int = 16, seed: int = 0,
                 signal: int = 120) -> None:
        self.n, self.num_classes, self.size, self.frames, self.seed, self.signal = (n, num_classes, size, frames,
                                                                                    seed, signal)
        self.class_names = [f"emotion_{c}" for c in range(num_classes)]

    def __len__(self) -> int:
        return self.n

    def clip(self, i: int) -> dict:
        g = torch.Generator().manual_seed(self.seed * 100_000 + i)
        label = i % self.num_classes
        video = torch.randint(0, 100, (self.frames, 3, self.size, self.size), generator=g, dtype=torch.uint8)
        audio = torch.randint(0, 100, (self.frames, 3, self.size, self.size), generator=g, dtype=torch.uint8)
        video[:, label % 3] += self.signal
        audio[:, label % 3] += self.signal
        return {"video": video, "audio": audio, "actor": f"actor_{i % 4}", "path": f"/fake/clip_{i:04d}.mp4",
                "label": label}

    def __getitem__(self, i: int) -> dict:
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.clip(i)
