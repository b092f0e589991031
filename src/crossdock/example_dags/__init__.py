"""Example workflows, loaded when ``[core] load_examples`` is true."""
