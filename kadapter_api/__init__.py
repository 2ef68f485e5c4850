"""The host-guest contract: agent.proto and the code generated from it, plus the byte relay both ends use."""
