"""Command-line interface: thin argparse front ends over the library."""
