"""pyrun: an OCI runtime-spec compliant container runtime, a drop-in for runc."""
__version__ = "0.1.0"
SPEC_VERSION = "1.3.0"
