"""Peer servers measured in the same run as ours: the alternatives a user would otherwise pick."""
