#!/usr/bin/env python3
"""A `cvc5` executable for cedar-policy-symcc, built on the PyPI `cvc5` wheel.

The wheel ships libcvc5 and its SMT-LIB parser as Python bindings but no command-line
binary, and cvc5's release binaries are on no package registry. SymCC only needs the
interactive text protocol: it starts `$CVC5 --lang smt [--opt=value ...]`, writes
SMT-LIB commands to stdin, and after `(check-sat)` / `(get-model)` reads one answer
line (`sat`, `unsat`, `unknown`), a model as `(` ... `)` on lines of their own, or
`(error "...")`. This driver cuts stdin into whole commands (balanced parentheses,
minding strings, `|quoted|` symbols and `;` comments), runs each one as cvc5's own
driver would, and prints what cvc5 prints, flushing after every answer so the
caller never waits on a buffer.

Usage: cvc5-driver.py [--lang smt] [--OPTION=VALUE ...]   (options go to the solver)
"""

import sys

try:
    import cvc5
except ImportError as err:  # the caller shows this to a person: say what to install
    sys.stdout.write('(error "cvc5-driver: the Python package cvc5 is missing (%s)")\n' % err)
    sys.stdout.flush()
    sys.exit(1)


def commands(stream):
    """Yields each complete top-level command of an SMT-LIB stream as text."""
    buf = []
    depth = 0
    in_string = False
    in_quoted = False
    in_comment = False
    while True:
        line = stream.readline()
        if not line:
            return
        i = 0
        n = len(line)
        while i < n:
            c = line[i]
            if in_comment:
                if c == "\n":
                    in_comment = False
                i += 1
                continue
            buf.append(c)
            if in_string:
                # `""` inside a string is an escaped quote, not the end.
                if c == '"':
                    if i + 1 < n and line[i + 1] == '"':
                        buf.append('"')
                        i += 1
                    else:
                        in_string = False
            elif in_quoted:
                if c == "|":
                    in_quoted = False
            elif c == '"':
                in_string = True
            elif c == "|":
                in_quoted = True
            elif c == ";":
                buf.pop()
                in_comment = True
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    yield "".join(buf)
                    buf = []
            i += 1
        # A line break ends a bare top-level token too (SymCC never sends one, but
        # an interactive person might type `(check-sat)` after stray text).
        if depth == 0 and not in_string and not in_quoted and "".join(buf).strip() == "":
            buf = []


def escape(text):
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ").strip()


def main(argv):
    tm = cvc5.TermManager()
    options = []
    args = iter(argv)
    for arg in args:
        if arg == "--lang":
            next(args, None)  # SMT-LIB is all this driver speaks
            continue
        if arg.startswith("--lang="):
            continue
        if arg.startswith("--") and "=" in arg:
            name, value = arg[2:].split("=", 1)
            options.append((name, value))
        elif arg.startswith("--"):
            options.append((arg[2:], "true"))
    # cvc5's `--tlimit` bounds the whole process; a caller that reuses one process
    # for many queries means each query, which is `tlimit-per`.
    options = [("tlimit-per", v) if n == "tlimit" else (n, v) for n, v in options]

    def fresh():
        solver = cvc5.Solver(tm)
        for name, value in options:
            try:
                solver.setOption(name, value)
            except Exception as err:  # an unknown option is not worth dying for
                sys.stderr.write("cvc5-driver: ignoring option --%s=%s: %s\n" % (name, value, err))
        symbols = cvc5.SymbolManager(tm)
        return solver, symbols, cvc5.InputParser(solver, symbols)

    solver, symbols, parser = fresh()
    out = sys.stdout
    for text in commands(sys.stdin):
        # `(reset)` must forget the logic and every declaration. Invoking it on the
        # solver leaves the symbol manager's logic behind (the next `set-logic`
        # would be refused), so start over with new objects, as cvc5's driver does.
        if "".join(text.split()) == "(reset)":
            solver, symbols, parser = fresh()
            continue
        # One string per command: the bindings' incremental input refuses appends, and
        # the symbol manager, not the string, carries declarations across commands.
        parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, text + "\n", "stdin")
        while True:
            try:
                cmd = parser.nextCommand()
            except Exception as err:
                # cvc5 gives up on a parse error too; SymCC expects the prefix.
                out.write('(error "Parse Error: %s")\n' % escape(str(err)))
                out.flush()
                return 1
            if cmd.isNull():
                break
            try:
                answer = cmd.invoke(solver, symbols)
            except Exception as err:
                answer = '(error "%s")\n' % escape(str(err))
            if answer:
                out.write(answer)
                if not answer.endswith("\n"):
                    out.write("\n")
                out.flush()
            if cmd.getCommandName() == "exit":
                return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
