"""The rollout stage: (question x temperature x sample) episodes -> graded, labelled trajectories."""
