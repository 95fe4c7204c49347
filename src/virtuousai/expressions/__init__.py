"""``${{ expression }}``: the sandboxed expression language of automation specs and templates.

``syntax`` tokenizes and parses to a small AST; ``evaluation`` evaluates it over JSON values and renders templates.
"""
