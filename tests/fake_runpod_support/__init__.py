"""Helpers for tests that talk to RunPod's API shapes: the fake server's tests and the RunPod backend's."""
