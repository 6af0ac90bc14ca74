"""A Model's views as NetworkX graphs, which render/ draws.

    unrolled.py   the folded graph and the graph unrolled over T steps
    ops.py        one node per primitive operation of a step (``draw --detail ops``)

The compiler's IR is not here but in compile/program.py: its types come from the
op table (compile/optable.py), so the IR and the table live together.
"""
