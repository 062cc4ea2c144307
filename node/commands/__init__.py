"""CLI command groups, one module per concept; each command parses, calls one function, exits."""
