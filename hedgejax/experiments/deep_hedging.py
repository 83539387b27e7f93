"""deep-hedging: what a learned hedging policy gains over delta and Whalley-Wilmott hedging
under proportional costs, the price it asks, where it does not trade, and what a recurrent
policy remembers.

A desk has SOLD `contracts` options and hedges with shares to expiry (`maturity`, rounded
to whole trading days, 252 a year), paying `cost_rate` x |traded value| on every share trade
(`hj.Proportional`). Conventions of docs/architecture.md ("Conventions"): the desk holds the
book (short), credited at t0 with the hedge model's price V0; positions in shares; P&L in
time-T money ($ in the default config), > 0 a gain. Every row is scored by the entropic risk

    rho(X) = (1/a) log E[exp(-a X)]        ($; a = `aversion` per $; lower is better)

of its P&L X on `paths` held-out paths (`hj.evaluate`: a key no fit saw, the same paths for
every strategy of a book; standard errors by 20 batch means), and against delta hedging by the
paired difference rho(X) - rho(X_delta) on the same paths (its standard error from the batch
means of the difference). rho is the exponential-utility certainty equivalent (Follmer &
Schied, "Stochastic Finance", 2004, example 4.13) and the objective of Buehler, Gonon,
Teichmann & Wood, "Deep hedging", Quantitative Finance 19(8), 2019, section 4.

1. Hedging a call and a barrier call (`barrier_kind`, default up-and-out at `barrier`,
   continuously monitored: `hj.Barrier`) in a Black-Scholes world (vol `vol`) and, with
   `heston = true`, in a Heston world (`v0`, `kappa`, `theta`, `xi`, `rho`), with
   - delta: `hj.DeltaHedge()`, daily, at the hedge model's closed-form delta;
   - Whalley-Wilmott: `hj.WhalleyWilmott(aversion)`, the asymptotic no-trade band around
     delta for exponential utility with the same risk aversion (Whalley & Wilmott 1997);
   - learned: `hj.NeuralHedge` (an MLP of `depth` x `hidden` tanh units, residual around
     delta: its untrained policy IS delta hedging), trained with `hj.fit` for `fit_steps`
     adam steps of `fit_paths` fresh paths (cosine-decayed learning rate from
     `learning_rate`, gradients clipped to `clip_norm`) on rho. Features (`hj.features`):
     log-moneyness, sqrt(time to maturity), the position held, the book's delta; in the
     Heston world also the instantaneous vol (`volatility`); for the barrier also its
     distance in vols (`barrier_distance`) and the knocked flag (`knocked`).
   The hedge model is Black-Scholes at `vol` in both worlds (Heston's own semi-closed-form
   delta at every step of every path costs minutes of compiling and running: the Heston
   world is hedged with a misspecified model, as a desk often does, and the learned policy
   reads the variance it sees). V0 is therefore the Black-Scholes price in both.

2. Indifference prices (Buehler et al. 2019, section 4; pfhedge's `Hedger.price`): the
   premium p with rho(X + p e^{rT}) = rho(0), X the hedged short call's P&L without its
   premium, in the Black-Scholes world at each cost rate of `price_cost_rates`. The learned
   policy is fitted at each rate (the fit of the table reused at `cost_rate`) and priced by
   `hj.indifference_price(..., steps=0)`; delta and Whalley-Wilmott hedging are priced on
   the same held-out paths by the same formula, which for the cash-invariant entropic risk
   (rho(0) = 0) is p = e^{-rT} rho(X) (the learned policy's price is computed both ways:
   results "indifference" / "learned_direct"). Without costs the price exceeds
   Black-Scholes by the risk premium of daily hedging, about -E[e] + a Var(e)/2 for the
   hedge error e (the cumulant expansion of rho; reported); with costs it rises, least for
   the best hedge.

3. The learned policy's trades, and where it does not trade: the Black-Scholes call and
   barrier policies are called on a grid of hand-built `hj.Observation`s at mid-life
   (trading day n/2): spots around the strike x positions held (-delta -/+ 0.35 x
   contracts), the book's delta and gamma by autodiff of `hj.price`. The heat map is the
   trade (target - position, shares), with the contours |trade| = 0.01 and 0.05 x contracts,
   drawn against delta hedging's target -delta and the Whalley-Wilmott band around it. At
   the spot nearest the strike the findings give where the policy rests (trade 0) and the
   fraction of the gap to -delta it closes from nearby positions (least-squares slope: 0
   for a band, 1 for delta hedging).

4. A forward-start call (`hj.ForwardStart`, strike fixed at the spot on trading day
   `forward_start_day`, expiring with the others): policies that do not read the delta,
   `NeuralHedge(residual=False, features=(log-moneyness, time to maturity, position))`,
   trained from scratch (they start holding nothing), `forward_fit_steps` steps of
   `forward_fit_paths` paths at `forward_learning_rate`:
   - memoryless: after the start date it cannot know the strike;
   - recurrent (`hidden_state` GRU units carried through the scan): it can remember the spot
     at the start date;
   - memoryless with the fixed-strike path feature (`hj.features.forward_strike`, log K/S):
     it knows the strike;
   and delta hedging (whose delta is conditioned on the fixed strike) for reference. The
   features are O(1), as `hj.features` asks: log(S / S0) / (vol sqrt(T)), tau / T, position
   / contracts and log(K / S) / (vol sqrt(T)), custom features built with
   `hj.features.Feature` (in a trial with the raw log-moneyness and time to maturity, of
   size 0.05 and 0.1, twice the training budget left the recurrent and strike-feature
   policies at about twice delta hedging's risk). One held-out path
   (of 64 recorded with `hedge(..., record=64)`: the one whose spot moved most before the
   start date) shows their positions.

Implementation note. Every strategy of a world runs in ONE compiled hedging loop: `Select`
holds delta, Whalley-Wilmott and the learned policies and returns the decision of member
`which` (an array leaf), and the call and the barrier are one `Book` whose quantities pick
the book; `Select(members, i)` decides exactly as `members[i]`
(tests/test_experiment_deep.py). Each `hj.fit` compiles its own training step.

Run time: compiling dominates (each fit compiles its training step: about 7 s for a call,
11 s for a barrier, 14 s for a barrier in the Heston world; the training steps themselves
are a few ms to a few tens of ms). With the defaults, nine fits (two per world, two more for
the indifference prices, three for the forward start), 2^14 held-out paths per row and 2048
paths per hedging step: about 140 s of CPU time on this 2-core CPU (measured 2 min 20 s of
CPU, 3 min wall while other jobs shared the machine); `heston = false` saves about 35 s.
"""

from __future__ import annotations

import functools
import math
import sys
import warnings
from typing import Any

import numpy as np

from ._common import (
    cost_phrase,
    daily_grid,
    figure,
    histograms,
    plural,
    stats_row,
    unhedged_result,
)
from ._framework import AtLeast, Between, Context, NonNegative, Outcome, Positive

NAME = "deep-hedging"
QUESTION = ("What does a learned hedging policy (deep hedging) gain over delta and "
            "Whalley-Wilmott hedging of a call and a barrier call under proportional costs, "
            "in a Black-Scholes and a Heston world; what price does it ask as costs rise; "
            "where does it not trade; and does a recurrent policy remember a forward start's "
            "strike?")
# paths >= 200: 20 batch means of at least 10 paths each
BOUNDS = {"paths": AtLeast(200), "contracts": Positive(), "spot": Positive(),
          "strike": Positive(), "vol": Positive(), "rate": Between(-0.5, 0.5),
          "maturity": Positive(), "barrier": Positive(),
          "cost_rate": Between(0.0, 0.1, closed=True), "aversion": Positive(),
          "v0": NonNegative(), "kappa": Positive(), "theta": NonNegative(), "xi": Positive(),
          "rho": Between(-1.0, 1.0, closed=True), "fit_steps": AtLeast(1),
          "fit_paths": AtLeast(16), "learning_rate": Positive(), "clip_norm": Positive(),
          "hidden": AtLeast(1), "depth": AtLeast(0),
          "price_cost_rates": Between(0.0, 0.1, closed=True),
          "forward_start_day": AtLeast(1), "forward_fit_steps": AtLeast(1),
          "forward_fit_paths": AtLeast(16),
          "forward_learning_rate": Positive(), "hidden_state": AtLeast(1)}

ALPHA = 0.95          # VaR / ES level of the full table
BATCHES = 20          # batch means of every standard error (hj.evaluate's default)
NO_TRADE = 0.01       # |trade| below this x contracts: "no trade" on the heat map
GRID_POINTS = 121     # spots and positions of the heat map
MAP_MARGIN = 0.35     # the heat map's positions: -delta -/+ this x contracts
TRACE_PATHS = 64      # forward start: paths recorded, one of them drawn

STRATEGIES = ("delta", "Whalley-Wilmott", "learned")
FORWARD = ("delta", "no delta", "no delta, recurrent", "strike feature")
COLORS = {"unhedged": "tab:gray", "delta": "tab:blue", "Whalley-Wilmott": "tab:orange",
          "learned": "tab:green", "no delta": "tab:red", "no delta, recurrent": "tab:purple",
          "strike feature": "tab:green"}


@functools.lru_cache(maxsize=1)
def select_class():
    """The `Select` strategy type (built on first use: hedgejax is imported lazily)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    import hedgejax as hj

    class Select(hj.AbstractStrategy):
        """The decision of `members[which]`, every member deciding at every step from the
        position actually held (a stateful member, e.g. a recurrent `hj.NeuralHedge`,
        carries its own state). `which` is an array leaf, not a static field: every member
        runs in the same compiled hedging loop, compiled once, whichever decides.
        `Select(members, i)` decides exactly as `members[i]`."""

        members: tuple
        which: jax.Array = eqx.field(converter=lambda x: jnp.asarray(x, jnp.int32))

        def init_state(self, position):
            return tuple(m.init_state(position) for m in self.members)

        def decide(self, obs, position, state):
            outs = [m.decide(obs, position, s) for m, s in zip(self.members, state,
                                                                 strict=True)]
            dtype = obs.spot.dtype
            targets = jnp.stack([jnp.asarray(t, dtype) for t, _ in outs])
            return targets[self.which], tuple(s for _, s in outs)

        def __call__(self, obs, position):
            state = self.init_state(position)
            if any(s is not None for s in state):
                raise TypeError("Select holds a stateful member: use it inside hedge(), "
                                "which calls its decide()")
            return self.decide(obs, position, state)[0]

    return Select


def _moneyness_in_vols(obs, position, reference, scale):
    import jax.numpy as jnp

    return jnp.log(obs.spot / reference) / scale


def _fraction_left(obs, position, maturity):
    import jax.numpy as jnp

    tau = jnp.asarray(obs.time_to_maturity, obs.spot.dtype) / maturity
    return jnp.broadcast_to(tau, obs.spot.shape)


def _strike_in_vols(obs, position, scale):
    import hedgejax as hj

    return hj.features.forward_strike()(obs, position) / scale


def forward_features(spot: float, vol: float, maturity: float, contracts: float) -> tuple:
    """The forward-start policies' features, each O(1) (`hj.features` asks for that): the
    log-moneyness against the initial spot in vols, log(S / S0) / (vol sqrt(T)); the
    fraction of the time to maturity left, tau / T; the position / contracts
    (`hj.features.position`). Custom features: plain functions of (obs, position) with
    their parameters bound by `hj.features.Feature`."""
    import hedgejax as hj

    scale = vol * math.sqrt(maturity)
    return (hj.features.Feature(_moneyness_in_vols, params=(("reference", float(spot)),
                                                            ("scale", float(scale)))),
            hj.features.Feature(_fraction_left, params=(("maturity", float(maturity)),)),
            hj.features.position(contracts))


def strike_feature(vol: float, maturity: float):
    """The forward start's fixed strike against the spot in vols:
    `hj.features.forward_strike` (log K / S) / (vol sqrt(T))."""
    import hedgejax as hj

    return hj.features.Feature(_strike_in_vols,
                               params=(("scale", float(vol * math.sqrt(maturity))),))


def _entropic_np(x: np.ndarray, a: float) -> np.ndarray:
    """(1/a) log mean exp(-a x) along the last axis, in float64 (stable)."""
    z = -a * np.asarray(x, dtype=np.float64)
    top = z.max(axis=-1, keepdims=True)
    return (np.log(np.mean(np.exp(z - top), axis=-1)) + top[..., 0]) / a


def _batch_values(pnl, a: float) -> np.ndarray:
    """rho on each of BATCHES disjoint batches of the paths (the batch means of
    `hj.evaluate`)."""
    x = np.asarray(pnl, dtype=np.float64)
    n = x.size // BATCHES * BATCHES
    return _entropic_np(x[:n].reshape(BATCHES, -1), a)


def _paired(pnl, ref_pnl, a: float) -> tuple[float, float]:
    """rho(pnl) - rho(ref_pnl) on the same paths, and its batch-means standard error."""
    diff = float(_entropic_np(np.asarray(pnl), a) - _entropic_np(np.asarray(ref_pnl), a))
    d = _batch_values(pnl, a) - _batch_values(ref_pnl, a)
    return diff, float(np.std(d, ddof=1) / math.sqrt(BATCHES))


def _row(case: str, label: str, res, ev: dict | None, ref_pnl, a: float) -> dict[str, Any]:
    """A table row: entropic risk (from `hj.evaluate`, or computed here for the unhedged
    book), its standard error, the paired difference from delta hedging, then the standard
    statistics at 95%."""
    pnl = np.asarray(res.pnl, dtype=np.float64)
    if ev is None:
        risk = float(_entropic_np(pnl, a))
        se = float(np.std(_batch_values(pnl, a), ddof=1) / math.sqrt(BATCHES))
    else:
        risk, se = ev["objective"], ev["objective_stderr"]
    row = {"case": case, "strategy": label, "entropic": risk, "entropic_se": se}
    if ref_pnl is None:
        row["vs_delta"], row["vs_delta_se"] = None, None
    else:
        row["vs_delta"], row["vs_delta_se"] = _paired(pnl, ref_pnl, a)
    stats = stats_row(label, res, alpha=ALPHA)
    del stats["strategy"]
    return {**row, **stats}


def run(cfg: dict[str, Any], ctx: Context) -> Outcome:
    import jax
    import optax

    import hedgejax as hj

    spot, strike, rate, vol = cfg["spot"], cfg["strike"], cfg["rate"], cfg["vol"]
    contracts, a, barrier = cfg["contracts"], cfg["aversion"], cfg["barrier"]
    kind = cfg["barrier_kind"]
    if kind not in ("up-and-out", "down-and-out"):
        raise ValueError(f"config key 'barrier_kind' must be 'up-and-out' or 'down-and-out', "
                         f"got {kind!r}")
    if kind == "up-and-out" and not barrier > max(spot, strike):
        raise ValueError(f"config key 'barrier' must be above spot and strike "
                         f"({max(spot, strike):g}) for an up-and-out call (else it is dead or "
                         f"worthless at t0), got {barrier:g}")
    if kind == "down-and-out" and not barrier < spot:
        raise ValueError(f"config key 'barrier' must be below spot ({spot:g}) for a "
                         f"down-and-out call (else it is dead at t0), got {barrier:g}")
    grid = daily_grid(cfg["maturity"])
    n_steps, T = grid.n_steps, grid.maturity
    if n_steps < 4:
        raise ValueError(f"config key 'maturity' must be at least 4 trading days (the "
                         f"forward start needs a start date inside), got {cfg['maturity']}")
    start_day = cfg["forward_start_day"]
    if not start_day < n_steps:
        raise ValueError(f"config key 'forward_start_day' must be below the {n_steps} trading "
                         f"days to maturity, got {start_day}")
    rates = list(dict.fromkeys(sorted(cfg["price_cost_rates"])))
    n, key = cfg["paths"], ctx.key
    progress = ctx.progress and sys.stderr.isatty()

    costs = hj.Proportional(cfg["cost_rate"])
    bs = hj.BlackScholes(spot, vol, rate)
    with warnings.catch_warnings():
        # the W4 parameters fail Feller on purpose (variance touches zero); that is allowed
        warnings.simplefilter("ignore", hj.FellerWarning)
        heston = hj.Heston(spot=spot, v0=cfg["v0"], kappa=cfg["kappa"], theta=cfg["theta"],
                           xi=cfg["xi"], rho=cfg["rho"], rate=rate)
    worlds = {"Black-Scholes": bs, "Heston": heston} if cfg["heston"] else {"Black-Scholes": bs}
    call = hj.EuropeanCall(strike, T)
    knock = hj.Barrier(strike, barrier, T, kind=kind)
    book_names = ("call", kind)

    def book_of(name: str, sign: float = -1.0):
        """The two-instrument book holding only `name` (`contracts` of it, short)."""
        return hj.Book([call, knock], quantities=[sign * contracts if b == name else 0.0
                                                   for b in book_names])

    def single(inst):
        return hj.Book([inst], quantities=[-contracts])

    def objective(result):
        return hj.risk.entropic(result.pnl, a)

    eval_key = jax.random.fold_in(key, 1)   # held-out paths: no fit sees this key

    def train(policy, world, book, cost, steps, lr, k, paths=cfg["fit_paths"]):
        schedule = optax.cosine_decay_schedule(lr, steps)
        return hj.fit(policy, objective, world, book, cost, grid, key=k,
                      optimizer=optax.adam(schedule), steps=steps, n_paths=paths,
                      hedge_model=bs, clip_norm=cfg["clip_norm"], progress=progress)

    def features(world_name: str, book_name: str) -> tuple:
        f = hj.features.default_features(strike, contracts, variance=world_name == "Heston")
        if book_name != "call":
            f = f + (hj.features.barrier_distance(vol), hj.features.knocked())
        return f

    def new_policy(world_name: str, book_name: str, i: int):
        return hj.NeuralHedge(jax.random.fold_in(key, 10 + i), hidden=cfg["hidden"],
                              depth=cfg["depth"], features=features(world_name, book_name),
                              reference=strike, book_scale=contracts)

    Select = select_class()  # noqa: N806 - a class
    ww = hj.WhalleyWilmott(a)

    # ------------------------------------------------------------ 1. fits, then hedging
    policies, histories = {}, {}
    jobs = [(w, b) for w in worlds for b in book_names]
    for i, (w, b) in enumerate(ctx.track(jobs, "training")):
        policies[w, b], histories[f"{w} / {b}"] = train(
            new_policy(w, b, i), worlds[w], single(call if b == "call" else knock), costs,
            cfg["fit_steps"], cfg["learning_rate"], jax.random.fold_in(key, 100 + i))

    results: dict[tuple[str, str], Any] = {}
    evals: dict[tuple[str, str], dict] = {}
    for w, world in worlds.items():
        members = (hj.DeltaHedge(), ww, policies[w, "call"], policies[w, kind])
        for b in ctx.track(book_names, f"hedging ({w})"):
            for label, which in zip(STRATEGIES, (0, 1, 2 if b == "call" else 3),
                                    strict=True):
                strategy = Select(members, which)
                evals[w, b, label] = hj.evaluate(
                    strategy, objective, world, book_of(b), costs, grid, n_paths=n,
                    key=eval_key, hedge_model=bs, batches=BATCHES)
                results[w, b, label] = hj.hedge(world, book_of(b), strategy, costs, grid, n,
                                                eval_key, hedge_model=bs)

    table, rows = [], {}
    for w in worlds:
        for b in book_names:
            case = f"{'BS' if w == 'Black-Scholes' else w} {b}"
            ref = results[w, b, "delta"]
            entries = [("unhedged", unhedged_result(ref), None)]
            entries += [(s, results[w, b, s], evals[w, b, s]) for s in STRATEGIES]
            for label, res, ev in entries:
                row = _row(case, label, res, ev, None if label == "delta" else ref.pnl, a)
                table.append(row)
                rows[case, label] = row

    # ------------------------------------------------------------ 2. indifference prices
    # hj.indifference_price gives the learned policy's price; delta's and Whalley-Wilmott's
    # come from the same formula on the same held-out paths (for entropic risk, cash
    # invariant with rho(0) = 0: p = e^{-rT} rho(X), X the hedged short call's P&L without
    # its premium), from the compiled loop of section 1 (the learned one is computed both
    # ways: results "indifference" / "learned_direct").
    price_key = jax.random.fold_in(key, 2)
    price_paths = jax.random.split(price_key)[1]    # hj.indifference_price's held-out paths
    rho = functools.partial(hj.risk.entropic, a=a)  # one risk measure object for every call
    growth = math.exp(rate * T)
    prices: dict[str, list] = {s: [] for s in STRATEGIES}
    price_se: dict[str, list] = {s: [] for s in STRATEGIES}
    direct, unhedged_price, price_histories, bs_price, approx = [], [], {}, None, None
    for j, r in enumerate(ctx.track(rates, "indifference prices")):
        cost_r = hj.Proportional(r)
        if r == cfg["cost_rate"]:
            policy_r = policies["Black-Scholes", "call"]
        else:
            policy_r, h = train(new_policy("Black-Scholes", "call", 0), bs, single(call),
                                cost_r, cfg["fit_steps"], cfg["learning_rate"],
                                jax.random.fold_in(key, 200 + j))
            price_histories[f"{r:g}"] = h
        members = (hj.DeltaHedge(), ww, policy_r, policies["Black-Scholes", kind])
        out = hj.indifference_price(Select(members, 2), rho, bs, book_of("call", +1.0),
                                    cost_r, grid, key=price_key, steps=0, eval_paths=n,
                                    batches=BATCHES)
        for label, which in zip(STRATEGIES, (0, 1, 2), strict=True):
            res = hj.hedge(bs, book_of("call"), Select(members, which), cost_r, grid, n,
                           price_paths)
            x = np.asarray(res.pnl, dtype=np.float64) + float(res.initial_price) * growth
            p = float(_entropic_np(x, a)) / growth
            se = float(np.std(_batch_values(x, a), ddof=1) / math.sqrt(BATCHES)) / growth
            if label == "delta" and r == 0:
                # the premium over V0 by the second-order cumulant expansion of rho:
                # rho(e) ~ -E[e] + a Var(e) / 2, e the frictionless hedge error
                err = np.asarray(res.pnl, dtype=np.float64)
                approx = (-np.mean(err) + 0.5 * a * np.var(err, ddof=1)) / growth
            if label == "learned":
                direct.append(p)
                p, se = float(out.price), float(out.stderr)
            prices[label].append(p)
            price_se[label].append(se)
        unhedged_price.append(float(out.unhedged_price))
        bs_price = float(out.model_price)

    # ------------------------------------------------------------ 3. no-trade region
    day = n_steps // 2
    maps = {b: _policy_map(cfg, policies["Black-Scholes", b], ww, bs, costs, grid, day,
                           call if b == "call" else knock, b != "call")
            for b in book_names}

    # ------------------------------------------------------------ 4. forward start
    start = float(np.asarray(grid.times)[start_day])
    fwd = hj.ForwardStart(start, T)
    fwd_book = single(fwd)
    base = forward_features(spot, vol, T, contracts)
    specs = {"no delta": dict(features=base),
             "no delta, recurrent": dict(features=base, hidden_state=cfg["hidden_state"]),
             "strike feature": dict(features=base + (strike_feature(vol, T),))}
    fwd_policies, fwd_histories = {}, {}
    for i, (label, spec) in enumerate(ctx.track(list(specs.items()), "forward start")):
        policy = hj.NeuralHedge(jax.random.fold_in(key, 30 + i), hidden=cfg["hidden"],
                                depth=cfg["depth"], residual=False, reference=spot,
                                book_scale=contracts, **spec)
        fwd_policies[label], fwd_histories[label] = train(
            policy, bs, fwd_book, costs, cfg["forward_fit_steps"],
            cfg["forward_learning_rate"], jax.random.fold_in(key, 300 + i),
            cfg["forward_fit_paths"])
    fwd_members = (hj.DeltaHedge(),) + tuple(fwd_policies[s] for s in FORWARD[1:])
    fwd_results, fwd_traces = {}, {}
    for which, label in enumerate(FORWARD):
        strategy = Select(fwd_members, which)
        ev = hj.evaluate(strategy, objective, bs, fwd_book, costs, grid, n_paths=n,
                         key=eval_key, hedge_model=bs, batches=BATCHES)
        res = hj.hedge(bs, fwd_book, strategy, costs, grid, n, eval_key, hedge_model=bs,
                       record=min(TRACE_PATHS, n))
        fwd_results[label] = (res, ev)
        fwd_traces[label] = res.trace
    ref = fwd_results["delta"][0]
    case = "BS fwd start"
    entries = [("unhedged", unhedged_result(ref), None)] + [(s, *fwd_results[s]) for s in FORWARD]
    for label, res, ev in entries:
        row = _row(case, label, res, ev, None if label == "delta" else ref.pnl, a)
        table.append(row)
        rows[case, label] = row

    # ------------------------------------------------------------ findings, figures
    price_block = {"cost_rates": rates, "black_scholes": bs_price,
                   "unhedged": unhedged_price, "learned_direct": direct,
                   "zero_cost_premium_normal_approx_delta": approx,
                   **{s: {"price": prices[s], "stderr": price_se[s]} for s in STRATEGIES}}
    fwd_path = _pick_path(fwd_traces["delta"], start_day)
    findings = _findings(cfg, rows, book_names, histories, price_block, maps, day, n_steps,
                         fwd_histories, start_day)
    caption = (
        f"A desk short {plural(contracts, 'option')} (strike {strike:g}, "
        f"{n_steps} trading days; the barrier call {kind} at {barrier:g}; the forward start's "
        f"strike fixed at the spot on day {start_day}) hedges with shares in a Black-Scholes "
        f"world at {vol:.0%} vol{' or a Heston world' if cfg['heston'] else ''}, hedge "
        f"model Black-Scholes at {vol:.0%}; "
        f"share trades {cost_phrase(cfg['cost_rate'])}; {n:,} held-out paths per row. "
        f"Entropic risk (1/a) log E[exp(-a P&L)] with a = {a:g} per $: lower is better; "
        f"'vs delta' is the paired difference on the same paths. Money in $ at expiry; "
        f"P&L > 0 is a gain; 95% VaR and ES are positive losses.")
    headers = {"case": "world and book (short)", "entropic": "entropic risk ($)",
               "entropic_se": "std error ($)", "vs_delta": "vs delta ($)",
               "vs_delta_se": "std error of vs delta ($)", "p95_pnl": "95th pct P&L ($)"}
    figures = {
        "hedging_risk": _risk_figure(rows, worlds, book_names),
        "pnl_histograms": _histogram_figure(results, worlds, book_names),
        "indifference_prices": _price_figure(price_block, a),
        "no_trade_region": _map_figure(cfg, maps, day, n_steps, book_names),
        "forward_start": _forward_figure(rows, fwd_traces, fwd_path, start_day),
    }
    out_results = {
        "trading_days": n_steps, "maturity_years": T,
        "initial_prices": {b: float(results["Black-Scholes", b, "delta"].initial_price)
                           for b in book_names},
        "training": {**{k: _history(h) for k, h in histories.items()},
                     **{f"call at cost {k}": _history(h) for k, h in price_histories.items()},
                     **{f"forward start / {k}": _history(h)
                        for k, h in fwd_histories.items()}},
        "indifference": price_block,
        "no_trade_region": {b: m["summary"] for b, m in maps.items()},
        "forward_start": {"start_day": start_day, "start_years": start,
                          "drawn_path": fwd_path},
    }
    return Outcome(
        table=table, findings=findings, results=out_results, figures=figures,
        caption=caption, headers=headers,
        title="deep hedging against delta and Whalley-Wilmott under costs",
        display=["case", "strategy", "entropic", "entropic_se", "vs_delta", "std_pnl",
                 "mean_cost"])


def _history(h) -> dict[str, Any]:
    obj = np.asarray(h.objective, dtype=float)
    k = max(1, obj.size // 10)
    return {"steps": int(obj.size), "objective": obj,
            "first_tenth_mean": float(np.mean(obj[:k])),
            "last_tenth_mean": float(np.mean(obj[-k:]))}


def _policy_map(cfg, policy, ww, model, costs, grid, day, inst, is_barrier) -> dict:
    """The policy's trade (target - position, shares) on a grid of spots x positions held at
    trading day `day`, from hand-built observations; the delta-hedge target and the
    Whalley-Wilmott band on the spot grid; where the policy does not trade."""
    import jax
    import jax.numpy as jnp

    import hedgejax as hj

    contracts = cfg["contracts"]
    t = float(np.asarray(grid.times)[day])
    tau = grid.maturity - t
    width = 2.5 * cfg["vol"] * math.sqrt(tau)
    lo, hi = cfg["strike"] * math.exp(-width), cfg["strike"] * math.exp(width)
    if is_barrier and inst.down:
        lo = max(lo, float(inst.barrier) * 1.001)
    elif is_barrier:
        hi = min(hi, float(inst.barrier) * 0.999)
    spots = np.linspace(lo, hi, GRID_POINTS)
    state = {"knocked": jnp.zeros((), bool)} if is_barrier else None

    def value(s):
        return -contracts * hj.price(model, inst, s, t, state=state)

    first = jax.grad(value)
    greeks = jax.jit(jax.vmap(lambda s: (first(s), jax.grad(first)(s))))
    delta_line, gamma_line = (np.asarray(x, dtype=float) for x in greeks(jnp.asarray(spots)))
    # positions within MAP_MARGIN x contracts of the delta-hedge target over the spot grid
    top = float(np.max(-delta_line)) / contracts + MAP_MARGIN
    bottom = float(np.min(-delta_line)) / contracts - MAP_MARGIN
    positions = np.linspace(bottom, top, GRID_POINTS) * contracts
    s_grid, p_grid = np.meshgrid(spots, positions)       # (positions, spots)
    book = hj.Book([inst], quantities=[-contracts])
    dtype = jnp.result_type(float)

    def observe(s, d, g):
        n_paths = s.shape[0]
        path = ({"knocked": jnp.zeros((1, n_paths), bool)},) if is_barrier else None
        return hj.Observation(
            step=jnp.asarray(day, jnp.int32), time=jnp.asarray(t, dtype),
            time_to_maturity=jnp.asarray(tau, dtype), spot=jnp.asarray(s, dtype),
            delta=jnp.asarray(d, dtype), gamma=jnp.asarray(g, dtype),
            cost_rate=costs.proportional_rate(jnp.asarray(s, dtype)),
            rate=jnp.asarray(cfg["rate"], dtype), book=book, path=path)

    obs = observe(s_grid.ravel(), np.tile(delta_line, GRID_POINTS),
                  np.tile(gamma_line, GRID_POINTS))
    target = np.asarray(_call_policy(policy, obs, jnp.asarray(p_grid.ravel(), dtype)), dtype=float)
    trade = (target - p_grid.ravel()).reshape(p_grid.shape)
    half = np.asarray(ww.half_width(observe(spots, delta_line, gamma_line)), dtype=float)
    # at the spot nearest the strike: where the policy rests (trade = 0), how much of the
    # gap to the delta-hedge target it closes (least-squares slope of the trade on
    # -delta - position, positions within 0.2 x contracts of -delta), and where it does not
    # trade
    j = int(np.argmin(np.abs(spots - cfg["strike"])))
    column, target_j = trade[:, j], float(-delta_line[j])
    cross = np.flatnonzero(np.diff(np.sign(column)) != 0)
    rest = None
    if cross.size:
        k = int(cross[np.argmin(np.abs(positions[cross] - target_j))])
        p0, p1, t0, t1 = positions[k], positions[k + 1], column[k], column[k + 1]
        rest = float(p0 - t0 * (p1 - p0) / (t1 - t0))
    near = np.abs(positions - target_j) <= 0.2 * contracts
    gap = target_j - positions[near]
    slope = float(np.sum(gap * column[near]) / np.sum(gap * gap))
    idle = np.abs(column) < NO_TRADE * contracts
    inside = positions[idle]
    summary = {
        "day": day, "spot": float(spots[j]), "delta_target": target_j,
        "ww_half_width": float(half[j]), "rest_position": rest,
        "fraction_of_gap_closed": slope,
        "no_trade_low": float(inside.min()) if inside.size else None,
        "no_trade_high": float(inside.max()) if inside.size else None,
        "position_step": float(positions[1] - positions[0]),
    }
    return {"spots": spots, "positions": positions, "trade": trade,
            "delta_target": -delta_line, "ww_half": half, "summary": summary}


def _call_policy(policy, obs, position):
    """`policy(obs, position)` compiled (a memoryless policy on hand-built observations)."""
    import equinox as eqx

    return eqx.filter_jit(lambda p, o, x: p(o, x))(policy, obs, position)


def _pick_path(trace, start_day: int) -> dict:
    """Of the recorded paths, the one whose spot moved most (in log) from t0 to the start
    date: there the fixed strike is furthest from the initial spot."""
    spots = np.asarray(trace.spot, dtype=float)
    move = np.abs(np.log(spots[:, start_day] / spots[:, 0]))
    i = int(np.argmax(move))
    return {"index": i, "spot_at_start": float(spots[i, start_day]),
            "log_move_to_start": float(np.log(spots[i, start_day] / spots[i, 0]))}


# ---------------------------------------------------------------------------- findings


def _fmt_diff(row) -> str:
    return f"{row['vs_delta']:+.4f} +/- {row['vs_delta_se']:.4f}"


def _findings(cfg, rows, book_names, histories, prices, maps, day, n_steps, fwd_histories,
              start_day) -> list[str]:
    findings = []
    a = cfg["aversion"]
    for case in [c for c, s in rows if s == "delta" and c != "BS fwd start"]:
        d, w, nn = (rows[case, s] for s in STRATEGIES)
        best = min((d, w, nn), key=lambda r: r["entropic"])
        findings.append(
            f"{case}: entropic risk (a = {a:g}) {d['entropic']:.4f} delta, "
            f"{w['entropic']:.4f} Whalley-Wilmott ({_fmt_diff(w)} vs delta), "
            f"{nn['entropic']:.4f} learned ({_fmt_diff(nn)} vs delta, paired standard "
            f"errors); best: {best['strategy']}. Mean cost {d['mean_cost']:.4f} / "
            f"{w['mean_cost']:.4f} / {nn['mean_cost']:.4f}, P&L std {d['std_pnl']:.3f} / "
            f"{w['std_pnl']:.3f} / {nn['std_pnl']:.3f}.")
        un = rows[case, "unhedged"]
        if un["entropic"] < d["entropic"]:
            findings.append(
                f"{case}: delta hedging is riskier than not hedging at all (entropic risk "
                f"{d['entropic']:.4f} against {un['entropic']:.4f} unhedged): near the "
                f"barrier the delta swings from long to short shares and the trades cost more "
                f"than they remove; the learned policy does not follow it there (in the "
                f"Black-Scholes world: figure no_trade_region).")
    rates = prices["cost_rates"]
    learned, lse = prices["learned"]["price"], prices["learned"]["stderr"]
    bs_price = prices["black_scholes"]
    if 0.0 in rates:
        i = rates.index(0.0)
        findings.append(
            f"Indifference price of the call without costs (learned policy, daily "
            f"rebalancing, a = {a:g}): {learned[i]:.4f} +/- {lse[i]:.4f} against the "
            f"Black-Scholes {bs_price:.4f}: {learned[i] - bs_price:+.4f}, the risk premium "
            f"of hedging daily instead of continuously (delta hedging: "
            f"{prices['delta']['price'][i]:.4f}, {prices['delta']['price'][i] - bs_price:+.4f};"
            f" -E[e] + a Var(e) / 2 of its hedge error e, the normal approximation: "
            f"{prices['zero_cost_premium_normal_approx_delta']:+.4f}).")
    if len(rates) > 1:
        parts = [f"{r:.2%}: {p:.4f}" for r, p in zip(rates, learned, strict=True)]
        rise = "rises" if all(y > x for x, y in zip(learned, learned[1:], strict=False)) \
            else "does not rise monotonically"
        findings.append(
            f"The learned indifference price {rise} with the cost rate ("
            + ", ".join(parts) + f"); at {rates[-1]:.2%} delta hedging asks "
            f"{prices['delta']['price'][-1]:.4f} and Whalley-Wilmott "
            f"{prices['Whalley-Wilmott']['price'][-1]:.4f} (unhedged: "
            f"{prices['unhedged'][-1]:.4f}).")
    for b in book_names:
        s = maps[b]["summary"]
        step = s["position_step"]
        if s["no_trade_low"] is None:
            idle = f"it trades at every position of the grid (|trade| >= {NO_TRADE:g} share)"
        elif s["no_trade_high"] - s["no_trade_low"] < 2.5 * step:
            idle = (f"it trades less than {NO_TRADE:g} x contracts only next to that point "
                    f"(grid spacing {step:.3f} share): no band, a partial move instead")
        else:
            idle = (f"it trades less than {NO_TRADE:g} x contracts for positions "
                    f"{s['no_trade_low']:.3f} to {s['no_trade_high']:.3f}")
        rest = ("it never rests on the grid" if s["rest_position"] is None
                else f"it rests (trade 0) at {s['rest_position']:.3f} shares")
        findings.append(
            f"Learned policy, Black-Scholes {b}, trading day {day} of {n_steps}, spot "
            f"{s['spot']:.2f}: delta hedging targets {s['delta_target']:.3f} shares and the "
            f"Whalley-Wilmott band is {s['delta_target'] - s['ww_half_width']:.3f} to "
            f"{s['delta_target'] + s['ww_half_width']:.3f}; {rest}, and from within 0.2 "
            f"share of -delta it trades {s['fraction_of_gap_closed']:.0%} of the way to it "
            f"(a band would trade 0%, delta hedging 100%); {idle}.")
    case = "BS fwd start"
    r = {s: rows[case, s] for s in ("unhedged",) + FORWARD}
    findings.append(
        f"Forward-start call (strike fixed on day {start_day}): entropic risk "
        + ", ".join(f"{s} {r[s]['entropic']:.4f}" for s in r)
        + f". Against the memoryless policy without delta, the recurrent one is "
        f"{r['no delta, recurrent']['entropic'] - r['no delta']['entropic']:+.4f} and the "
        f"one with the fixed-strike feature "
        f"{r['strike feature']['entropic'] - r['no delta']['entropic']:+.4f} (vs delta: "
        f"{_fmt_diff(r['no delta'])}, {_fmt_diff(r['no delta, recurrent'])}, "
        f"{_fmt_diff(r['strike feature'])}).")
    train = [f"{k} {h.objective[:max(1, h.objective.size // 10)].mean():.3f} -> "
             f"{h.objective[-max(1, h.objective.size // 10):].mean():.3f}"
             for k, h in {**histories, **{f"forward / {k}": v
                                          for k, v in fwd_histories.items()}}.items()]
    findings.append(
        "Training (entropic risk on each step's fresh paths, first tenth -> last tenth of "
        "the steps): " + "; ".join(train) + f". Hedging fits: {cfg['fit_steps']} steps of "
        f"{cfg['fit_paths']:,} paths; forward start: {cfg['forward_fit_steps']} steps.")
    return findings


# ---------------------------------------------------------------------------- figures


def _risk_figure(rows, world_names, book_names):
    fig, ax = figure(ncols=2, size=(11.0, 4.2))
    worlds = ["BS" if w == "Black-Scholes" else w for w in world_names]
    x = np.arange(len(worlds))
    w = 0.26
    for j, b in enumerate(book_names):
        a = ax[0, j]
        for k, s in enumerate(STRATEGIES):
            vals = [rows[f"{wn} {b}", s]["entropic"] for wn in worlds]
            errs = [2 * rows[f"{wn} {b}", s]["entropic_se"] for wn in worlds]
            a.bar(x + (k - 1) * w, vals, w, yerr=errs, capsize=3, color=COLORS[s], label=s)
        a.set_xticks(x, [f"{w} world" for w in world_names])
        a.set_ylabel("entropic risk of the P&L ($, lower is better)")
        a.set_title(f"short {b}: risk after costs (error bars 2 std errors)", fontsize=10)
        a.legend(fontsize=8)
    return fig


def _histogram_figure(results, worlds, book_names):
    fig, ax = figure(ncols=2, nrows=len(worlds), size=(11.0, 4.0 * len(worlds)))
    for i, w in enumerate(worlds):
        for j, b in enumerate(book_names):
            a = ax[i, j]
            a.set_prop_cycle(color=[COLORS[s] for s in STRATEGIES])
            histograms(a, {s: results[w, b, s].pnl for s in STRATEGIES},
                       xlabel="P&L at expiry, after costs ($)", clip=(0.5, 99.5))
            a.set_title(f"{w} world, short {b}", fontsize=10)
    return fig


def _price_figure(prices, aversion):
    fig, ax = figure(size=(7.0, 4.6))
    a = ax[0, 0]
    rates = 100.0 * np.asarray(prices["cost_rates"])
    for s, marker in zip(STRATEGIES, ("o", "s", "^"), strict=True):
        a.errorbar(rates, prices[s]["price"], yerr=2 * np.asarray(prices[s]["stderr"]),
                   marker=marker, capsize=3, color=COLORS[s], label=f"hedged: {s}")
    a.axhline(prices["black_scholes"], color="k", linestyle="--", linewidth=1,
              label=f"Black-Scholes price {prices['black_scholes']:.3f}")
    a.set_xlabel("proportional cost rate (% of traded value)")
    a.set_ylabel("indifference price of the short call ($)")
    a.set_title(f"price that makes selling and hedging no riskier than nothing\n"
                f"(entropic risk, a = {aversion:g} per $; error bars 2 std errors)",
                fontsize=10)
    a.legend(fontsize=8)
    return fig


def _map_figure(cfg, maps, day, n_steps, book_names):
    from matplotlib.colors import TwoSlopeNorm

    fig, ax = figure(ncols=2, size=(12.0, 4.8))
    scale = max(float(np.max(np.abs(m["trade"]))) for m in maps.values()) or 1.0
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-scale, vmax=scale)
    for j, b in enumerate(book_names):
        m, a = maps[b], ax[0, j]
        mesh = a.pcolormesh(m["spots"], m["positions"], m["trade"], cmap="RdBu_r", norm=norm,
                            shading="nearest")
        a.contour(m["spots"], m["positions"], np.abs(m["trade"]),
                  levels=[NO_TRADE * cfg["contracts"], 5 * NO_TRADE * cfg["contracts"]],
                  colors="k", linewidths=1.0, linestyles=["-", ":"])
        a.plot(m["spots"], m["delta_target"], color="tab:green", linewidth=1.5,
               label="delta hedge target (-delta)")
        a.plot(m["spots"], m["delta_target"] - m["ww_half"], color="tab:orange",
               linestyle="--", linewidth=1.2, label="Whalley-Wilmott band")
        a.plot(m["spots"], m["delta_target"] + m["ww_half"], color="tab:orange",
               linestyle="--", linewidth=1.2)
        a.plot([], [], color="k", linewidth=1.0,
               label=f"|trade| = {NO_TRADE * cfg['contracts']:g} share")
        a.plot([], [], color="k", linewidth=1.0, linestyle=":",
               label=f"|trade| = {5 * NO_TRADE * cfg['contracts']:g} share")
        a.set_xlabel("spot ($)")
        a.set_ylabel("position held before the decision (shares)")
        a.set_title(f"learned policy, short {b}, day {day} of {n_steps}: trade (shares)",
                    fontsize=10)
        a.legend(fontsize=7, loc="upper left")
        fig.colorbar(mesh, ax=a, label="trade = target - position (shares)")
    return fig


def _forward_figure(rows, traces, path, start_day):
    fig, ax = figure(ncols=2, size=(12.0, 4.6))
    a = ax[0, 0]
    labels = ("unhedged",) + FORWARD
    case = "BS fwd start"
    vals = [rows[case, s]["entropic"] for s in labels]
    errs = [2 * rows[case, s]["entropic_se"] for s in labels]
    a.bar(np.arange(len(labels)), vals, yerr=errs, capsize=3,
          color=[COLORS[s] for s in labels])
    a.set_xticks(np.arange(len(labels)), [s.replace(", ", ",\n") for s in labels])
    a.set_yscale("log")
    from ._common import log_ticks

    log_ticks(a.yaxis)
    a.set_ylabel("entropic risk of the P&L ($, log scale; lower is better)")
    a.set_title("short forward-start call: risk after costs (2 std errors)", fontsize=10)
    b = ax[0, 1]
    i = path["index"]
    days = np.arange(np.asarray(traces["delta"].position).shape[1])
    for s in FORWARD:
        b.step(days, np.asarray(traces[s].position)[i], where="post", color=COLORS[s],
               label=s, linestyle="--" if s == "strike feature" else "-")
    b.axvline(start_day, color="k", linestyle=":", linewidth=1,
              label=f"strike fixed (day {start_day}, spot {path['spot_at_start']:.1f})")
    b.set_xlabel("trading day")
    b.set_ylabel("hedge position (shares)")
    b.set_title("positions along one held-out path", fontsize=10)
    b.legend(fontsize=7)
    spot_ax = b.twinx()
    spot_ax.plot(np.arange(np.asarray(traces["delta"].spot).shape[1]),
                 np.asarray(traces["delta"].spot)[i], color="tab:gray", linewidth=0.8,
                 alpha=0.6)
    spot_ax.set_ylabel("spot ($, grey)")
    return fig
