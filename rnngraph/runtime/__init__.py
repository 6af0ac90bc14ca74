"""What users and generated code call.

    compiled.py   Compiled: checked inputs in, outputs and gradients out
    workspace.py  arrays over the steps reused from call to call
    ops.py        the stable functions generated code calls (sigmoid, softmax, ...)
    jit.py        backend="numba": the loops' module, Numba's cache, the fallback
    jitops.py     the elementwise kernels of the Numba loops (imports numba)
"""
