"""AST -> a checked Model, plain data the later stages read.

    analysis.py   roles (input, state, parameter, ...), directions in time, delays,
                  the order one step runs the equations in
    sizes.py      every vector's size and every matrix's shape, solved
    limits.py     the documented caps (delays, sizes, unrolling, nodes drawn)
    model.py      Model, load(), parse(); the conveniences compile(), draw() call api.py
    summary.py    what `rnngraph check` prints
"""
