"""Explainability: class activation maps and their overlays, and the shortcut audit."""

from .audit import AuditResult, SourceProbe, audit, map_shares, region_masks, source_probe
from .cam import (
    CAM_METHODS,
    class_activation_maps,
    explain_images,
    grad_cam,
    overlay_heatmap,
    save_gradcam_overlay,
)

__all__ = [
    "AuditResult",
    "CAM_METHODS",
    "SourceProbe",
    "audit",
    "map_shares",
    "region_masks",
    "source_probe",
    "class_activation_maps",
    "explain_images",
    "grad_cam",
    "overlay_heatmap",
    "save_gradcam_overlay",
]
