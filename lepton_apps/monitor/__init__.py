"""Model monitoring: reference profiles of a model's inputs, scores and embeddings, drift and data-quality
reports of a current window against them, and live performance from outcomes returned for served
predictions. Domain-free: the domains build the windows (``Predictor.monitor_window``) and name their live
metrics (``DomainSpec.live_metrics``); this package compares numbers, categories and vectors.

The names below are imported on first use, so that ``lepton-apps --help`` does not load pandas and scipy.
"""
from lepton_apps.domains import lazy_exports

_EXPORTS = {"DriftConfig": "drift", "DriftReport": "drift", "compare": "drift", "compare_window": "drift", "worst": "drift",
            "Profile": "profile", "build_profile": "profile", "profile_categorical": "profile",
            "profile_embeddings": "profile", "profile_numeric": "profile", "profile_scores": "profile",
            "profile_table": "profile"}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
