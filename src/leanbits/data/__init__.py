"""Data: IDX files, sources (cache, mirrors, offline packages), train/val/test splits."""
