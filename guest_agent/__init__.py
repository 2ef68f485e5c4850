"""Kadapter's agent inside a Kata VM: hook listener, gRPC service, BPF-LSM enforcer."""
