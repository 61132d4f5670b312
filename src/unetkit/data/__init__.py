"""Data sets as folders: layouts, pairing, splits, negative frames, the cache, preprocessing."""
