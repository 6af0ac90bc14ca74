"""The language: text -> AST and back.

    parser.py     the Lark grammar (grammars/rnn.lark) -> ast.py's dataclasses, with
                  positions; every mistake a located RnnGraphError
    ast.py        the AST: equations, expressions, size declarations
    functions.py  the language's functions (tanh, softmax, ...), one row each
    names.py      how a name is written: Greek letters, subscripts, LaTeX
    printing.py   AST -> the plain notation (to_text) and LaTeX (to_latex)
"""
