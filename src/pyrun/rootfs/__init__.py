"""Building the container's root filesystem inside its mount namespace."""
