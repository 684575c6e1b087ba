"""Repository root marker for pytest; the plugin itself loads through its `pytest11` entry point."""
