"""The trainer's L-BFGS: finds the minimum of convex problems, monotonically, and stops when asked."""

import numpy as np
import pytest

from core.lbfgs import History, minimize_lbfgs


def _quadratic(seed=0, n=50):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, n))
    a = q @ q.T / n + np.diag(np.exp(rng.uniform(-2, 2, n)))  # positive definite, condition ~100
    b = rng.standard_normal(n)
    return (lambda x: (0.5 * x @ a @ x - b @ x, a @ x - b)), np.linalg.solve(a, b)


def test_reaches_the_minimum_of_an_ill_conditioned_quadratic():
    fun, best = _quadratic()
    found = minimize_lbfgs(fun, np.zeros(best.size), max_iter=500, ftol=0, gtol=1e-10)
    assert np.allclose(found.x, best, atol=1e-8)
    assert found.iterations < 200 and found.evaluations >= found.iterations


def test_matches_scipy_on_multinomial_logistic_regression():
    from scipy.optimize import minimize

    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((300, 8)), rng.integers(0, 3, 300)

    def fun(theta):
        w = theta.reshape(3, 8)
        z = x @ w.T
        z -= z.max(1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        loss = -np.log(p[np.arange(300), y]).mean() + 0.05 * (w**2).sum()
        p[np.arange(300), y] -= 1
        return loss, (p.T @ x / 300 + 0.1 * w).ravel()

    ours = minimize_lbfgs(fun, np.zeros(24), ftol=0, gtol=1e-9, max_iter=300)
    ref = minimize(fun, np.zeros(24), jac=True, method="L-BFGS-B", options={"ftol": 0, "gtol": 1e-10})
    assert np.allclose(ours.x, ref.x, atol=1e-6)


def test_every_iteration_lowers_the_loss_and_the_callback_sees_each():
    fun, _ = _quadratic(seed=2)
    seen = []
    found = minimize_lbfgs(fun, np.ones(50), max_iter=15, callback=lambda x, n: seen.append((n, fun(x)[0])))
    assert [n for n, _ in seen] == list(range(1, found.iterations + 1)) and found.iterations == 15
    losses = [fun(np.ones(50))[0]] + [f for _, f in seen]
    assert all(b < a for a, b in zip(losses, losses[1:], strict=False))


def test_an_exception_in_the_loss_propagates():
    fun, _ = _quadratic()
    calls = []

    def stopping(x):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return fun(x)

    with pytest.raises(KeyboardInterrupt):
        minimize_lbfgs(stopping, np.zeros(50))


def test_the_two_loop_recursion_on_inner_products_equals_the_textbook_one():
    rng = np.random.default_rng(3)
    n, m = 30, 5
    h = History(n, m)
    pairs = []
    for _ in range(8):  # more pairs than slots: the ring wraps
        s = rng.standard_normal(n)
        y = s * rng.uniform(0.5, 2, n)  # s.y > 0
        h.add(s, y)
        pairs = (pairs + [(s, y)])[-m:]
    g = rng.standard_normal(n)
    q, alphas = g.copy(), []
    for s, y in reversed(pairs):
        a = (s @ q) / (s @ y)
        alphas.append(a)
        q -= a * y
    s, y = pairs[-1]
    r = (s @ y) / (y @ y) * q
    for (s, y), a in zip(pairs, reversed(alphas), strict=True):
        r += s * (a - (y @ r) / (s @ y))
    assert np.allclose(h.direction(g), -r)
