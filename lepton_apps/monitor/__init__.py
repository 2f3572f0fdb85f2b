"""Model monitoring: reference profiles of a model's inputs, scores and embeddings, and drift and
data-quality reports of a current window against them. Domain-free: the domains build the profiles and
windows, this package only compares numbers, categories and vectors."""
from lepton_apps.monitor.drift import DriftConfig, DriftReport, compare, worst
from lepton_apps.monitor.profile import (
    Profile, build_profile, profile_categorical, profile_embeddings, profile_numeric, profile_scores, profile_table)

__all__ = ["DriftConfig", "DriftReport", "Profile", "build_profile", "compare", "profile_categorical",
           "profile_embeddings", "profile_numeric", "profile_scores", "profile_table", "worst"]
