"""Explainability: class activation maps and their overlays."""

from .cam import grad_cam, overlay_heatmap, save_gradcam_overlay

__all__ = ["grad_cam", "overlay_heatmap", "save_gradcam_overlay"]
