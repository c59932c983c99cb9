"""HTTP plumbing: the upstream client, the ready-made answer, fast routes, workers and handoff, forwarding."""
