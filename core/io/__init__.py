"""Files: data readers and the atomic writers and safe readers of artifacts."""
