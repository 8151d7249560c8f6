"""``ffidelity evaluate``: Fid, R-Fid and F-Fid of explanations of a user's own model, from files on disk."""
