"""model_list deployments as routing targets."""
