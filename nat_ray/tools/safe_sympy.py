"""Safe evaluation of calculator expressions with SymPy.

The paper's calculator is ``simplify(sympify(expr))``; ``sympify`` runs Python ``eval`` on its input, and the input
here is LLM output, i.e. untrusted. This module parses the expression with :mod:`ast` (parsing executes nothing),
accepts only a whitelist of syntax, functions and constants, and builds the SymPy expression node by node with
bounds on size, exponent and factorial arguments. The observation formatting is the paper's.

Everything here runs in-process and has no wall-clock bound; :class:`nat_ray.tools.calculator.Calculator` adds the
hard timeout by running it in a worker process it can kill.
"""

from __future__ import annotations

import ast
import io
import operator
import tokenize
from collections.abc import Callable
from dataclasses import dataclass

import sympy as sp


class CalcError(ValueError):
    """An expression the calculator refuses; the message becomes ``Error: <message>``."""


@dataclass(frozen=True)
class Limits:
    max_chars: int = 2000
    max_nodes: int = 1000
    # A flat sum is a left-leaning chain as deep as it is long, so depth must allow long sums of numbers.
    max_depth: int = 200
    # ~3,000 decimal digits: far beyond arithmetic word problems, small enough to stay fast.
    max_bits: int = 10_000
    max_symbolic_exponent: int = 1000
    max_factorial_arg: int = 1000
    max_args: int = 8


DEFAULT_LIMITS = Limits()

_CONSTANTS: dict[str, sp.Basic] = {"pi": sp.pi, "E": sp.E, "I": sp.I, "oo": sp.oo}


def _round(x: sp.Expr, ndigits: sp.Expr | None = None) -> sp.Expr:
    if not x.is_number or (ndigits is not None and not ndigits.is_Integer):
        raise CalcError("round() takes a number and an optional integer number of digits")
    return round(x) if ndigits is None else round(x, int(ndigits))


# name -> (callable, min args, max args)
_FUNCTIONS: dict[str, tuple[Callable[..., sp.Basic], int, int]] = {
    "sqrt": (sp.sqrt, 1, 1),
    "cbrt": (sp.cbrt, 1, 1),
    "root": (sp.root, 2, 2),
    "exp": (sp.exp, 1, 1),
    "log": (sp.log, 1, 2),
    "ln": (sp.log, 1, 1),
    "sin": (sp.sin, 1, 1),
    "cos": (sp.cos, 1, 1),
    "tan": (sp.tan, 1, 1),
    "cot": (sp.cot, 1, 1),
    "sec": (sp.sec, 1, 1),
    "csc": (sp.csc, 1, 1),
    "asin": (sp.asin, 1, 1),
    "acos": (sp.acos, 1, 1),
    "atan": (sp.atan, 1, 1),
    "atan2": (sp.atan2, 2, 2),
    "sinh": (sp.sinh, 1, 1),
    "cosh": (sp.cosh, 1, 1),
    "tanh": (sp.tanh, 1, 1),
    "floor": (sp.floor, 1, 1),
    "ceiling": (sp.ceiling, 1, 1),
    "ceil": (sp.ceiling, 1, 1),
    "Abs": (sp.Abs, 1, 1),
    "abs": (sp.Abs, 1, 1),
    "sign": (sp.sign, 1, 1),
    "Min": (sp.Min, 1, DEFAULT_LIMITS.max_args),
    "Max": (sp.Max, 1, DEFAULT_LIMITS.max_args),
    "min": (sp.Min, 1, DEFAULT_LIMITS.max_args),
    "max": (sp.Max, 1, DEFAULT_LIMITS.max_args),
    "round": (_round, 1, 2),
    "Mod": (sp.Mod, 2, 2),
    "gcd": (sp.gcd, 2, 2),
    "lcm": (sp.lcm, 2, 2),
    "factorial": (sp.factorial, 1, 1),
    "factorial2": (sp.factorial2, 1, 1),
    "binomial": (sp.binomial, 2, 2),
    "Rational": (sp.Rational, 1, 2),
}
_FACTORIAL_LIKE = {"factorial", "factorial2", "binomial"}

_BINOPS: dict[type[ast.operator], Callable[[sp.Basic, sp.Basic], sp.Basic]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[sp.Basic], sp.Basic]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _rewrite_factorials(expression: str) -> str:
    """SymPy's parser accepts ``5!`` and ``n!!``; Python's grammar does not, so rewrite them as calls."""
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(expression).readline)]
    except (tokenize.TokenError, SyntaxError, IndentationError) as exc:
        raise CalcError(f"cannot parse expression: {exc}") from exc
    out: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.string != "!":
            out.append(tok.string)
            i += 1
            continue
        double = i + 1 < len(tokens) and tokens[i + 1].string == "!"
        if not out:
            raise CalcError("'!' must follow a number, a name or a parenthesised expression")
        # The operand is the previous token, or the whole parenthesised group (with its function name, if a call).
        start = len(out) - 1
        if out[start] == ")":
            level = 0
            while start >= 0:
                level += {")": 1, "(": -1}.get(out[start], 0)
                if level == 0:
                    break
                start -= 1
            if start < 0:
                raise CalcError("unbalanced parentheses before '!'")
            if start > 0 and out[start - 1].isidentifier():
                start -= 1
        operand = " ".join(out[start:])
        del out[start:]
        out.append(f"{'factorial2' if double else 'factorial'}({operand})")
        i += 2 if double else 1
    return " ".join(out)


class _Builder:
    def __init__(self, source: str, limits: Limits) -> None:
        self.source = source
        self.limits = limits
        self.nodes = 0

    def build(self, node: ast.AST, depth: int = 0) -> sp.Basic:
        self._count()
        if depth > self.limits.max_depth:
            raise CalcError(f"expression nested too deeply (more than {self.limits.max_depth} levels)")
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.BinOp):
            return self._binop_chain(node, depth)
        if isinstance(node, ast.UnaryOp):
            op = _UNARY.get(type(node.op))
            if op is None:
                raise CalcError(f"unsupported operator: {type(node.op).__name__}")
            return op(self.build(node.operand, depth + 1))
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        raise CalcError(f"unsupported syntax: {type(node).__name__}")

    def _binop_chain(self, node: ast.BinOp, depth: int) -> sp.Basic:
        if isinstance(node.op, ast.Pow):  # right-associative: depth applies as usual
            base, exp = self.build(node.left, depth + 1), self.build(node.right, depth + 1)
            self._check_pow(base, exp)
            return self._checked(base**exp)
        # `1 + 2 + … + n` parses as a left-leaning chain as deep as it is long. Walk that spine iteratively so a
        # long flat sum costs neither depth budget nor Python recursion; the node count still bounds it.
        spine: list[ast.BinOp] = []
        cur: ast.expr = node
        while isinstance(cur, ast.BinOp) and not isinstance(cur.op, ast.Pow):
            spine.append(cur)
            cur = cur.left
        self._count(len(spine) - 1)  # the chain's head was counted by build()
        acc = self.build(cur, depth + 1)
        for link in reversed(spine):
            op = _BINOPS.get(type(link.op))
            if op is None:
                raise CalcError(f"unsupported operator: {type(link.op).__name__}")
            acc = self._checked(op(acc, self.build(link.right, depth + 1)))
        return acc

    def _count(self, n: int = 1) -> None:
        self.nodes += n
        if self.nodes > self.limits.max_nodes:
            raise CalcError(f"expression too large (more than {self.limits.max_nodes} nodes)")

    def _constant(self, node: ast.Constant) -> sp.Basic:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CalcError(f"unsupported literal: {value!r}"[:200])
        if isinstance(value, int):
            return self._checked(sp.Integer(value))
        # Build the Float from the literal's text, as sympify does, so precision and range match (1e400 stays finite).
        text = ast.get_source_segment(self.source, node) or repr(value)
        return sp.Float(text.replace("_", ""))

    def _name(self, name: str) -> sp.Basic:
        if name in _CONSTANTS:
            return _CONSTANTS[name]
        if name in _FUNCTIONS:
            raise CalcError(f"function {name!r} used without arguments")
        if name.startswith("_") or len(name) > 64:
            raise CalcError(f"name not allowed: {name[:64]!r}")
        # sympify turns unknown names into symbols; keep that, so `x + 1` gives `x + 1`.
        return sp.Symbol(name)

    def _call(self, node: ast.Call, depth: int) -> sp.Basic:
        if not isinstance(node.func, ast.Name):
            raise CalcError(f"unsupported call target: {type(node.func).__name__}")
        name = node.func.id
        if name not in _FUNCTIONS:
            raise CalcError(f"unknown function: {name[:64]!r}")
        if node.keywords:
            raise CalcError(f"{name}() takes no keyword arguments")
        if any(isinstance(a, ast.Starred) for a in node.args):
            raise CalcError("unsupported syntax: Starred")
        fn, lo, hi = _FUNCTIONS[name]
        if not lo <= len(node.args) <= hi:
            raise CalcError(f"{name}() takes {lo}..{hi} arguments, got {len(node.args)}")
        args = [self.build(a, depth + 1) for a in node.args]
        if name in _FACTORIAL_LIKE:
            for a in args:
                if a.is_number and not (a.is_real and abs(a) <= self.limits.max_factorial_arg):
                    raise CalcError(f"{name}() argument too large (limit {self.limits.max_factorial_arg})")
        return self._checked(fn(*args))

    def _check_pow(self, base: sp.Basic, exp: sp.Basic) -> None:
        if not exp.is_Number:
            return
        if base.is_Rational and exp.is_Rational:
            if base in (sp.S.Zero, sp.S.One, sp.S.NegativeOne):
                return
            bits = max(abs(base.p).bit_length(), abs(base.q).bit_length())
            if abs(exp) * bits > self.limits.max_bits:
                raise CalcError("result too large")
        elif not base.is_Number and abs(exp) > self.limits.max_symbolic_exponent:
            raise CalcError(f"exponent too large (limit {self.limits.max_symbolic_exponent})")

    def _checked(self, value: sp.Basic) -> sp.Basic:
        rationals = [value] if value.is_Rational else value.atoms(sp.Rational) if not value.is_Number else []
        for r in rationals:
            if max(abs(r.p).bit_length(), abs(r.q).bit_length()) > self.limits.max_bits:
                raise CalcError("result too large")
        return value


def parse(expression: str, limits: Limits = DEFAULT_LIMITS) -> sp.Basic:
    """Build the SymPy expression for ``expression``; raise :class:`CalcError` on anything not whitelisted."""
    if not isinstance(expression, str):
        raise CalcError("expression must be a string")
    if len(expression) > limits.max_chars:
        raise CalcError(f"expression too long ({len(expression)} characters, limit {limits.max_chars})")
    text = expression.strip()
    if not text:
        raise CalcError("empty expression")
    # sympify's default convert_xor: `^` is power, at the token level (so `2^3+1` is 9, not 2**4).
    text = text.replace("^", "**")
    if "!" in text:
        text = _rewrite_factorials(text)
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:
        raise CalcError(f"cannot parse expression: {getattr(exc, 'msg', exc)}") from exc
    return _Builder(text, limits).build(tree.body)


def format_result(result: sp.Basic) -> str:
    """The paper's observation format: rationals as SymPy prints them, other numbers with ``{:g}``."""
    if result.is_number:
        if isinstance(result, sp.Rational):
            return str(result)
        return f"{float(result):g}"
    return str(result)


def evaluate(expression: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """The observation for ``expression``: its simplified value, or ``Error: <reason>``. Never raises."""
    try:
        return format_result(sp.simplify(parse(expression, limits)))
    except Exception as exc:  # any failure is an observation for the agent, never a crash of its caller
        return f"Error: {exc}"
