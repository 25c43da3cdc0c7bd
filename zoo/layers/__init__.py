"""Custom layers, registered as serializable under the package name "zoo"."""
