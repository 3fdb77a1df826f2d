"""modalbag's built-in plugins: one module per component, each registered by its own entry point."""
