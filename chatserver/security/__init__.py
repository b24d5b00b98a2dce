"""Secrets at rest: the key box that encrypts stored secrets, and re-encryption under a new key."""
