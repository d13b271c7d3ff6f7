"""Generated from proto/shoal/v1 by proto/generate.py; do not edit."""
