"""Search layer: staged counterexample search and SMT-LIB export."""
