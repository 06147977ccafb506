"""Configs as code: the full key set (`base`), the paper's settings and their CPU variants
(`paper`: images, video, audio; `nerf`: scenes) and the checks every run passes (`checks`).

The files under the repository's `configs/` folder are a few lines each over these.
"""
