"""One sub-package per paper's method; what the methods share stays in `ehrmind` itself."""
