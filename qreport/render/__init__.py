"""Render a stored run into one self-contained HTML file. Reads Parquet only; never imports torch."""
