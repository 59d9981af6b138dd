"""One object per checkpoint: preprocessing plus encode/generate."""
