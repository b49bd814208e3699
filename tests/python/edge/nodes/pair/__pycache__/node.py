raise SystemExit('a node.py inside a .venv is never discovered')
