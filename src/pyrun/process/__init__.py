"""The parent/child protocol and the ordered steps that turn a fork into a container."""
