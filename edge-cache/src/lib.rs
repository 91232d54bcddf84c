//! Cache policy lands with the edge-cache issue.
