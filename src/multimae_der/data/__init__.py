"""Emotion data: clip sources and file-name parsing, labels, subject folds, held-out clips, media decoding, audio
pictures, preparation into a cache, datasets, and the synthetic SynthAV set. Imports nothing above it."""
