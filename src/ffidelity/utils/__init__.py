"""Small helpers shared by every layer: atomic writes, progress bars, registries, safe loading, the allocator."""
